"""Hot reload: SIGHUP, or a change of the config file, swaps the pools in place.

A new config that does not load is refused with one log line and the old one stays.
Requests in flight finish on the pools they started with. Every setting is either
applied (upstreams, router, limits, default model, assistants, ``audit.content`` and
``audit.retention_days``, and of ``auth``: ``allow``, ``trusted_proxies``,
``session_ttl_s``, ``refresh_ttl_s``, ``login_attempts``) or listed in
:data:`RESTART_ONLY`: those keep their running values, and one warning names each that
changed ("needs a restart"). Nothing is ignored silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from enclave.config import ConfigSource, Settings
from enclave.errors import ConfigError

log = logging.getLogger("enclave.reload")

# What only a restart applies: read once when the gateway starts (the listening socket,
# the database and data directory, the embedded engine, the logs, the limiter, the
# audit writer, the knowledge and memory services).
RESTART_ONLY = (
    "home", "host", "port", "engine", "database_url", "tls_cert", "tls_key", "log_level",
    "access_log", "watch_config", "auth.mode", "auth.rate_limits", "auth.redis_url",
    "audit.enabled", "audit.strict", "knowledge", "memory",
)  # fmt: skip
POLL_S = 1.0


class Reloader:
    def __init__(
        self,
        source: ConfigSource,
        current: Callable[[], Settings],
        apply: Callable[[Settings], None],
        *,
        on_result: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.source = source
        self.current = current
        self.apply = apply
        self.on_result = on_result
        self.path = source.file()
        self._seen = _fingerprint(self.path)

    def reload(self, reason: str) -> bool:
        """Load the config again and apply it; False (and the old config kept) if it fails."""
        try:
            new = self.source.load()
        except ConfigError as exc:
            log.error("config reload (%s) refused, keeping the running config: %s", reason, exc)
            self.on_result("refused")
            return False
        new, stuck = keep_running(new, self.current())
        if stuck:
            log.warning(
                "config reload: %s change(s) only on restart (needs a restart; the running "
                "value stays)", ", ".join(stuck),
            )  # fmt: skip
        try:
            self.apply(new)
        except ConfigError as exc:
            log.error("config reload (%s) refused, keeping the running config: %s", reason, exc)
            self.on_result("refused")
            return False
        names = ", ".join(u.name for u in new.upstreams) or "none"
        log.info("config reloaded (%s); upstreams: %s", reason, names)
        self.on_result("applied")
        return True

    def install_signal(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")

    def remove_signal(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    async def watch(self) -> None:
        """Poll the file; reload when its content changes (editors replace files whole)."""
        while True:
            await asyncio.sleep(POLL_S)
            seen = _fingerprint(self.path)
            if seen != self._seen and seen is not None:
                self._seen = seen
                self.reload(f"{self.path} changed")


def keep_running(new: Settings, old: Settings) -> tuple[Settings, list[str]]:
    """``new`` with the :data:`RESTART_ONLY` settings of ``old``, and those that differed."""
    stuck = [name for name in RESTART_ONLY if _value(new, name) != _value(old, name)]
    for name in stuck:
        new = _keep(new, old, name)
    return new, stuck


def _value(settings: Settings, dotted: str) -> object:
    value: object = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _keep(new: Settings, old: Settings, dotted: str) -> Settings:
    """``new`` with the setting ``dotted`` (``section`` or ``section.field``) of ``old``."""
    section, _, name = dotted.partition(".")
    if not name:
        return new.model_copy(update={section: getattr(old, section)})
    part = getattr(new, section).model_copy(update={name: getattr(getattr(old, section), name)})
    return new.model_copy(update={section: part})


def _fingerprint(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # mid-replace, or gone: wait for it to come back
