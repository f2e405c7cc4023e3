"""Run the gateway under uvicorn: logging, the engine's model file, then serve."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from enclave.config import ConfigSource, Settings
from enclave.errors import ConfigError

GRACEFUL_S = 10  # seconds a stopping server gives the calls in flight


def setup_logging(settings: Settings) -> None:
    """Readable lines on stderr; the access log is JSON lines on stderr and in logs/."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied call is noise
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    bare = logging.Formatter("%(message)s")
    access = logging.getLogger("enclave.access")
    access.propagate = False
    for sink in (
        logging.StreamHandler(sys.stderr),
        logging.FileHandler(settings.logs_dir / "access.log", encoding="utf-8"),
    ):
        sink.setFormatter(bare)
        access.addHandler(sink)


# What enclave keeps in its data directory (the memory archive's default folder included)
OWN_ENTRIES = (
    "enclave.db", "enclave.db-wal", "enclave.db-shm", "secret.key", "logs", "models", "archive",
)  # fmt: skip


def make_private(settings: Settings) -> None:
    """Everything the gateway writes is its owner's alone: the umask makes new directories
    0700 and files 0600 (the database, its -wal and -shm, logs, models, knowledge files),
    and what an older version left readable to others in the data directory is fixed."""
    os.umask(0o077)
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    fixed = [_private(home)]
    for entry in (home / name for name in OWN_ENTRIES):  # not all of a home set too wide
        fixed.append(_private(entry))
        if entry.is_symlink():
            continue  # a models folder kept elsewhere is the operator's to set
        for folder, dirs, files in os.walk(entry):
            fixed += [_private(Path(folder, name)) for name in [*dirs, *files]]
    database = sqlite_file(settings.database)
    if database is not None and home not in database.parents:
        fixed += [_private(Path(f"{database}{end}")) for end in ("", "-wal", "-shm")]
    if any(fixed):
        logging.getLogger("enclave.gateway").info(
            "made %d file(s) in %s readable by their owner only", sum(fixed), home
        )


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///PATH`` database URL (None for others)."""
    prefix = "sqlite+aiosqlite:///"
    path = url.removeprefix(prefix)
    if path == url or not path or path.startswith((":memory:", "file:")):
        return None
    return Path(path).expanduser()


def _private(path: Path) -> bool:
    """Take group and other permissions off ``path`` (never through a link): True if
    it had any."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
            return False
        path.chmod(stat.S_IMODE(mode) & ~0o077)
    except FileNotFoundError:
        return False
    except OSError as exc:  # another user's file
        logging.getLogger("enclave.gateway").warning("cannot make %s private: %s", path, exc)
        return False
    return True


def engine_model(settings: Settings) -> Path | None:
    """The GGUF file for the embedded engine, preparing a bundled model when needed."""
    if not settings.engine.enabled:
        return None
    from enclave.engine.modelfiles import ModelStore
    from enclave.progress import ProgressBar

    store = ModelStore(settings.models_dir)
    name = settings.engine.model
    if store.is_bundled(name):
        with ProgressBar(f"preparing {name}") as progress:
            return store.prepare(name, progress=progress).path
    return store.resolve(name)


def raise_file_limit() -> None:
    """Each stream holds two sockets (client and upstream): 1,000 streams need more than
    the usual soft limit of 1,024 descriptors, so take what the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger("enclave.gateway").warning("cannot raise the file limit: %s", exc)


def check_exposure(settings: Settings, *, insecure: bool) -> None:
    """Refuse a non-loopback address without authentication, unless told ``--insecure``;
    refuse half a TLS configuration."""
    from enclave.gateway.gatekeeper import auth_enabled, is_loopback

    if not auth_enabled(settings) and not is_loopback(settings.host) and not insecure:
        raise ConfigError(
            f"refusing to serve {settings.host} without authentication (auth.mode is off): "
            "turn it on, bind 127.0.0.1, or pass --insecure"
        )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls(settings.tls_cert, settings.tls_key)


def check_tls(cert: Path, key: Path) -> None:
    """Load the certificate and key once now: a bad file is one line, not a traceback
    from the server's start."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError included
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot load TLS certificate {cert} with key {key}: {reason}") from None


def serve(
    settings: Settings, source: ConfigSource | None = None, *, insecure: bool = False
) -> None:
    """Serve in this process (``enclave serve --workers N``: :mod:`.workers`)."""
    import uvicorn

    from enclave.gateway.app import create_app

    prepare(settings, insecure=insecure)
    app = create_app(settings, engine_model=engine_model(settings), source=source)
    announce(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings))


def prepare(settings: Settings, *, insecure: bool) -> None:
    """What comes before serving: the exposure and TLS checks, private files, the
    witness, logging and the file limit."""
    from enclave.audit.witness import check_witness

    check_exposure(settings, insecure=insecure)
    make_private(settings)
    check_witness(settings)  # a witness that cannot be written: one line, before starting
    setup_logging(settings)
    raise_file_limit()


def announce(settings: Settings, workers: int = 1) -> None:
    scheme = "https" if settings.tls_cert else "http"
    logging.getLogger("enclave.gateway").info(
        "enclave listening on %s://%s:%s%s (web console at /, administration at /admin)",
        scheme, settings.host, settings.port, f" with {workers} workers" if workers > 1 else "",
    )  # fmt: skip


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options besides the app and the address (a worker passes its socket)."""
    from enclave.gateway.connections import protocol_class

    return {
        "log_level": settings.log_level.lower(),
        "access_log": False,  # enclave writes its own structured line per request
        "log_config": None,
        # header, idle and connection bounds (server.*); the body's is in the app
        "http": protocol_class(settings.server),
        "timeout_graceful_shutdown": GRACEFUL_S,
        # X-Forwarded-For is believed only from auth.trusted_proxies (the edge decides);
        # uvicorn's own handling would trust it from 127.0.0.1 and rewrite the peer.
        "proxy_headers": False,
        "server_header": False,
        "ssl_certfile": settings.tls_cert,
        "ssl_keyfile": settings.tls_key,
    }
