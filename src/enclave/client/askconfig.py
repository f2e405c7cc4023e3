"""``ask``'s settings: the ``ask.toml`` file, the environment and the flags, merged.

Precedence, highest first: flags > environment (``ENCLAVE_URL``, ``ENCLAVE_API_KEY``,
``ENCLAVE_MODEL``) > the file > built-in defaults. Each effective value remembers where it
came from, so ``ask config`` can say so.

The file is ``$ASK_CONFIG`` if set, else ``$XDG_CONFIG_HOME/enclave/ask.toml`` (default
``~/.config/enclave/ask.toml``)::

    url = "http://gateway:8000"
    api_key_command = "pass show enclave"   # or: api_key = "sk-enc-..."
    model = "qwen2.5-7b"
    role = "explain"                        # applied when no --role is given
    theme = "monokai"
    max_stdin_bytes = 200000
    max_image_side = 1568                   # longest side of images sent, px
    history = false                         # do not record conversations

    [roles.sql]
    prompt = "Answer with one PostgreSQL query only."

Everything here is pure (no network); ``api_key_command`` is run only by
:func:`resolve_api_key`, which ``ask`` calls when it actually sends a request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enclave.errors import AskConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MODEL = "default"
DEFAULT_THEME = "monokai"
DEFAULT_MAX_STDIN_BYTES = 200_000
DEFAULT_MAX_IMAGE_SIDE = 1568
API_KEY_COMMAND_TIMEOUT_S = 10.0

BUILTIN_ROLES: dict[str, str] = {
    "shell": (
        "You turn requests into shell commands. Reply with the command only: one line "
        "(join steps with && or pipes), no explanation, no Markdown, no code fences, no "
        "backticks. Assume a POSIX shell on Linux unless told otherwise."
    ),
    "explain": (
        "Explain clearly and concisely what the given command, code, log or error means: "
        "what it does, why it happens, and what to do about it. Prefer short paragraphs "
        "and lists; quote the relevant lines."
    ),
    "review": (
        "You are a careful code reviewer. Point out bugs, security problems, unclear "
        "names and missing error handling in the given code or diff, most important "
        "first, each with the line it concerns and a concrete fix. Say so if it looks fine."
    ),
}

# name → (environment variable or None, default)
_SCALARS: dict[str, tuple[str | None, object]] = {
    "url": ("ENCLAVE_URL", DEFAULT_URL),
    "api_key": ("ENCLAVE_API_KEY", None),
    "model": ("ENCLAVE_MODEL", DEFAULT_MODEL),
    "role": (None, None),
    "theme": (None, DEFAULT_THEME),
    "max_stdin_bytes": (None, DEFAULT_MAX_STDIN_BYTES),
    "max_image_side": (None, DEFAULT_MAX_IMAGE_SIDE),  # px; enclave.client.imageprep
    "history": (None, True),  # record conversations (enclave.client.sessions)
}
_FILE_KEYS = {*_SCALARS, "api_key_command", "roles"}


@dataclass(frozen=True, slots=True)
class Setting:
    value: Any
    source: str  # "flag", "env ENCLAVE_URL", "file", "default"


@dataclass(frozen=True, slots=True)
class AskConfig:
    path: Path
    found: bool
    settings: dict[str, Setting]
    api_key_command: str | None = None
    roles: dict[str, str] = field(default_factory=dict)
    file_roles: tuple[str, ...] = ()

    def value(self, name: str) -> Any:
        return self.settings[name].value

    def role_prompt(self, name: str) -> str:
        """The system prompt of a role; :class:`AskConfigError` listing the known ones."""
        try:
            return self.roles[name]
        except KeyError:
            known = ", ".join(sorted(self.roles))
            raise AskConfigError(f"unknown role {name!r} (known roles: {known})") from None


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("ASK_CONFIG"):
        return Path(env["ASK_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "enclave" / "ask.toml"


def load_file(path: Path) -> dict[str, Any] | None:
    """The file's table, checked; ``None`` if there is no file."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AskConfigError(f"config file {path}: cannot read it: {_reason(exc)}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AskConfigError(f"config file {path}: {exc}") from None
    problem = check_file(data)
    if problem:
        raise AskConfigError(f"config file {path}: {problem}")
    return data


def check_file(data: Mapping[str, Any]) -> str | None:
    """What is wrong with a parsed file (the first problem), or ``None``."""
    return next(_problems(data), None)


def _problems(data: Mapping[str, Any]) -> Iterator[str]:
    for key in data:
        if key not in _FILE_KEYS:
            yield f"unknown key {key!r} (known: {', '.join(sorted(_FILE_KEYS))})"
    for key in ("url", "api_key", "api_key_command", "model", "role", "theme"):
        if key in data and not isinstance(data[key], str):
            yield f"{key} must be a string"
    if "api_key" in data and "api_key_command" in data:
        yield "set api_key or api_key_command, not both"
    size = data.get("max_stdin_bytes", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        yield "max_stdin_bytes must be a positive integer"
    side = data.get("max_image_side", 1568)
    if isinstance(side, bool) or not isinstance(side, int) or side < 16:
        yield "max_image_side must be an integer of at least 16"
    if not isinstance(data.get("history", True), bool):
        yield "history must be true or false"
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        yield "roles must be a table of [roles.NAME] tables"
        return
    for name, role in roles.items():
        if not isinstance(role, dict) or not isinstance(role.get("prompt"), str):
            yield f'[roles.{name}] needs prompt = "..."'
        elif set(role) - {"prompt"}:
            yield f"[roles.{name}] has unknown key {sorted(set(role) - {'prompt'})[0]!r}"


def merge(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file: Mapping[str, Any] | None,
    *,
    path: Path,
) -> AskConfig:
    """Flags (``None`` = not given) > environment > file > defaults."""
    file = file or {}
    settings: dict[str, Setting] = {}
    for name, (var, default) in _SCALARS.items():
        if flags.get(name) is not None:
            settings[name] = Setting(flags[name], "flag")
        elif var and env.get(var):
            settings[name] = Setting(env[var], f"env {var}")
        elif name in file:
            settings[name] = Setting(file[name], "file")
        else:
            settings[name] = Setting(default, "default")
    command = file.get("api_key_command")
    if settings["api_key"].source != "default":
        command = None  # a key from a flag or the environment wins; the command never runs
    roles = dict(BUILTIN_ROLES)
    roles.update({name: role["prompt"] for name, role in file.get("roles", {}).items()})
    found = bool(file) or path.is_file()
    return AskConfig(path, found, settings, command, roles, tuple(sorted(file.get("roles", {}))))


def load(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> AskConfig:
    env = os.environ if env is None else env
    path = config_path(env)
    return merge(flags, env, load_file(path), path=path)


def resolve_api_key(config: AskConfig, *, timeout: float = API_KEY_COMMAND_TIMEOUT_S) -> str | None:
    """The API key, running ``api_key_command`` if that is where it comes from."""
    if config.api_key_command is None:
        key = config.value("api_key")
        return str(key) if key else None
    import subprocess

    command = config.api_key_command
    try:
        done = subprocess.run(  # noqa: S602 - the user's own command, from their own file
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AskConfigError(f"api_key_command timed out after {timeout:g} s: {command}") from None
    except OSError as exc:
        raise AskConfigError(f"api_key_command cannot run: {_reason(exc)}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        detail = f": {lines[-1]}" if lines else ""
        raise AskConfigError(f"api_key_command failed (exit {done.returncode}){detail}")
    key = done.stdout.strip()
    if not key:
        raise AskConfigError(f"api_key_command printed nothing: {command}")
    return key


def mask_key(key: str | None) -> str:
    """``sk-enc-abcd1234…`` (the key's public prefix) or ``**********``; never the secret."""
    if not key:
        return "(none)"
    if key.startswith("sk-enc-") and len(key) > 24:
        return key[:15] + "…"
    return "*" * 10


def describe(config: AskConfig) -> list[str]:
    """The lines ``ask config`` prints: each effective value and where it came from."""
    found = "" if config.found else "  (not found; defaults apply)"
    lines = [f"config file      {config.path}{found}"]
    for name, setting in config.settings.items():
        if name == "api_key":
            if config.api_key_command is not None:
                value = f"(from api_key_command `{config.api_key_command}`, run when asking)"
                lines.append(f"{name:17}{value}  [file]")
                continue
            shown = mask_key(setting.value)
        elif setting.value is None:
            shown = "(none)"
        else:
            shown = str(setting.value)
        lines.append(f"{name:17}{shown}  [{setting.source}]")
    builtin = ", ".join(sorted(set(BUILTIN_ROLES) - set(config.file_roles)))
    custom = ", ".join(config.file_roles)
    names = builtin + (f"; from file: {custom}" if custom else "")
    lines.append(f"{'roles':17}{names}")
    return lines


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
