"""What a task may touch: files under configured roots, allowlisted URLs, named commands.

Every step kind and tool goes through here, so one set of checks guards them all:

- :func:`resolve_under` turns a relative path into one under a root, refusing absolute
  paths, ``..`` and symlinks that lead out of the root (the path is resolved, then
  checked);
- :func:`file_root` names a root of ``tasks.file_roots``; :func:`check_url` wants a
  prefix of ``tasks.http_allowlist``; :func:`command_argv` a name of ``tasks.commands``;
- :class:`ReadBudget` and :func:`check_write` keep a run's bytes within
  ``tasks.limits.max_read_bytes`` / ``max_write_bytes``.

A refusal is an :class:`~enclave.errors.EnclaveError` whose message names the setting.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import httpx
import regex

from enclave.errors import Forbidden, InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from enclave.taskconfig import TaskLimits, TasksSettings
    from enclave.tasks.context import RunContext

ROOTS = "tasks.file_roots"
OUTPUT = "tasks.output_dir"
ALLOWLIST = "tasks.http_allowlist"
COMMANDS = "tasks.commands"
MAX_READ = "tasks.limits.max_read_bytes"
MAX_WRITE = "tasks.limits.max_write_bytes"
MAX_FILES = "tasks.limits.max_files"
MAX_OUTPUT_FILES = "tasks.limits.max_output_files"
PATTERN_CHARS = "tasks.limits.pattern_chars"
GLOBSTARS = "tasks.limits.pattern_globstars"
PATTERN_SECONDS = "tasks.limits.pattern_seconds"
SCHEMES = frozenset({"http", "https"})


def check_relative(relative: str, *, param: str = "path", setting: str = ROOTS) -> PurePosixPath:
    """``relative`` as a relative POSIX path: no absolute path, drive or ``..``."""
    if "\x00" in relative:
        raise InvalidRequest(f"{param} holds a NUL character", param=param)
    posix = PurePosixPath(relative.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        raise Forbidden(
            f"{param} {relative!r} is absolute; tasks only use paths relative to a "
            f"folder of {setting}", param=param,
        )  # fmt: skip
    if ".." in posix.parts:
        raise Forbidden(f"{param} {relative!r} climbs out with '..' ({setting})", param=param)
    return posix


def resolve_under(root: Path, relative: str, *, param: str = "path", setting: str = ROOTS) -> Path:
    """``root / relative``, resolved (symlinks followed), refused unless it stays in ``root``.
    ``setting`` is what the refusal names: the setting that gave ``root``."""
    posix = check_relative(relative, param=param, setting=setting)
    base = root.resolve()
    found = (base / posix).resolve()
    if not found.is_relative_to(base):
        raise Forbidden(
            f"{param} {relative!r} leads out of its folder through a symbolic link ({setting})",
            param=param,
        )
    return found


def inside(base: Path, path: Path) -> bool:
    """Whether ``path`` (symlinks followed) is under the resolved ``base``."""
    return path.resolve().is_relative_to(base)


@dataclass(frozen=True)
class Patterns:
    """Bounds of user patterns (``tasks.limits.pattern_*``) and the matching time left."""

    chars: int = 1000
    globstars: int = 4
    seconds: float = 2.0
    spent: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)

    @classmethod
    def of(cls, limits: TaskLimits) -> Patterns:
        return cls(limits.pattern_chars, limits.pattern_globstars, limits.pattern_seconds)

    def compile(self, pattern: str, param: str, flags: int = 0) -> Any:
        """``pattern`` compiled with the ``regex`` package (whose matches can time out);
        too long or not a regular expression: :class:`InvalidRequest` naming ``param``."""
        if len(pattern) > self.chars:
            raise InvalidRequest(
                f"{param} has {len(pattern)} characters, more than {PATTERN_CHARS} "
                f"({self.chars})", param=param,
            )  # fmt: skip
        try:
            return regex.compile(pattern, flags)
        except (regex.error, RecursionError, OverflowError) as exc:
            raise InvalidRequest(f"{param} is not a valid pattern: {exc}", param=param) from exc

    def run(self, method: Any, text: str, param: str) -> Any:
        """``method(text)`` (a compiled pattern's ``match`` or ``search``) within the time
        left of ``tasks.limits.pattern_seconds``."""
        left = self.seconds - self.spent[0]
        started = time.monotonic()
        try:
            return method(text, timeout=max(left, 0.001))
        except TimeoutError as exc:
            raise InvalidRequest(
                f"{param} took longer than {PATTERN_SECONDS} ({self.seconds} s) to match: "
                "simplify it (nested repetition such as (a+)+ backtracks)", param=param,
            ) from exc  # fmt: skip
        finally:
            self.spent[0] += time.monotonic() - started


def glob_regex(pattern: str, patterns: Patterns | None = None) -> Any:
    """A relative glob as a regular expression over POSIX relative paths: ``*``, ``?``
    and ``[...]`` within one name, ``**`` for any number of folders (pathlib's rules).
    Consecutive ``**`` are one; more than ``tasks.limits.pattern_globstars`` are refused."""
    patterns = patterns or Patterns()
    check_relative(pattern, param="glob")
    if len(pattern) > patterns.chars:
        raise InvalidRequest(f"glob has {len(pattern)} characters, more than {PATTERN_CHARS} "
                             f"({patterns.chars})", param="glob")  # fmt: skip
    parts: list[str] = []
    for part in pattern.replace("\\", "/").split("/"):
        if part not in {"", "."} and not (part == "**" and parts[-1:] == ["**"]):
            parts.append(part)
    if not parts:
        raise InvalidRequest("glob matches nothing: give a pattern such as *.log", param="glob")
    if parts.count("**") > patterns.globstars:
        raise InvalidRequest(f"glob has {parts.count('**')} '**' parts, more than "
                             f"{GLOBSTARS} ({patterns.globstars})", param="glob")  # fmt: skip
    expression = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            expression += ".*" if last else "(?:[^/]+/)*"
        else:
            expression += _name_regex(part) + ("" if last else "/")
    return patterns.compile(expression + r"\Z", "glob", regex.DOTALL)


def _name_regex(part: str) -> str:
    out, index = "", 0
    while index < len(part):
        char = part[index]
        close = part.find("]", index + 2) if char == "[" else -1
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif close != -1:
            body = part[index + 1 : close].replace("\\", "\\\\")
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            index = close
        else:
            out += re.escape(char)
        index += 1
    return out


def find_files(
    root: Path, pattern: str, limit: int, *, since: float | None = None,
    patterns: Patterns | None = None,
) -> list[Path]:  # fmt: skip
    """The regular files under ``root`` whose relative path matches ``pattern``, sorted.

    Folders are walked without following symlinks (a link to ``/`` is never walked), a
    file that is a symlink out of the root is left out, so is one modified before
    ``since`` (a timestamp), and more than ``limit`` matches are refused
    (``tasks.limits.max_files``) as soon as they are found.
    """
    patterns = patterns or Patterns()
    compiled = glob_regex(pattern, patterns)
    found: list[Path] = []
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if patterns.run(compiled.match, relative, "glob") and _wanted(root, path, since):
                found.append(path)
                check_count(len(found), limit, f"glob {pattern!r}")
    return sorted(p for p in found if p.is_file())


def _wanted(root: Path, path: Path, since: float | None) -> bool:
    if not inside(root, path):
        return False
    try:
        return since is None or path.stat().st_mtime >= since
    except OSError:  # gone, or a broken link
        return False


def file_root(settings: TasksSettings, name: str, *, param: str = "root") -> Path:
    """The folder ``tasks.file_roots[name]``, resolved; an unknown name is refused."""
    root = settings.file_roots.get(name)
    if root is None:
        known = ", ".join(sorted(settings.file_roots)) or "none configured"
        raise Forbidden(f"{param} {name!r} is not a folder of {ROOTS} ({known})", param=param)
    return root.resolve()


def allowed_url(url: str, allowlist: list[str]) -> bool:
    """Whether ``url`` is http(s), has no user info and starts with one of ``allowlist``.

    Compared as parsed URLs (dot segments removed), not strings: scheme, host and port
    must be equal and the path must continue the prefix's at a ``/`` (``http://wiki``
    allows neither ``http://wiki.evil.example`` nor ``http://wiki@evil.example``).
    """
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    if target.scheme not in SCHEMES or not target.host or target.userinfo:
        return False
    return any(_continues(target, prefix) for prefix in allowlist)


def _continues(target: httpx.URL, prefix: str) -> bool:
    try:
        allowed = httpx.URL(prefix)
    except httpx.InvalidURL:
        return False
    if (target.scheme, target.host, _port(target)) != (
        allowed.scheme, allowed.host, _port(allowed)
    ):  # fmt: skip
        return False
    base = allowed.path or "/"
    under = base if base.endswith("/") else base + "/"
    # the path as sent and as a server that decodes before normalising sees it
    for path in {target.path or "/", decoded_path(target.raw_path)}:
        if path != base and not path.startswith(under):
            return False
    return target.query.startswith(allowed.query)


_ENCODED = re.compile(r"%(?:2e|2f|5c|25)", re.IGNORECASE)
_DECODED = {"%2e": ".", "%2f": "/", "%5c": "/", "%25": "%"}


def decoded_path(raw: bytes) -> str:
    """The path of ``raw`` (path and query, percent-encoded) with ``%2e``, ``%2f``,
    ``%5c`` (and ``%25`` before them) decoded, backslashes read as slashes, and dot
    segments (``..;x`` too, as Tomcat reads it) removed: the path a lenient server serves."""
    path = raw.decode("ascii", errors="replace").split("?", 1)[0].replace("\\", "/")
    while (decoded := _ENCODED.sub(lambda m: _DECODED[m.group().lower()], path)) != path:
        path = decoded.replace("\\", "/")
    kept: list[str] = []
    for segment in path.split("/")[1:]:
        bare = segment.split(";", 1)[0]
        if bare == "..":
            if kept:
                kept.pop()
        elif bare != ".":
            kept.append(segment)
    return "/" + "/".join(kept)


def _port(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def check_url(settings: TasksSettings, url: str, *, param: str = "url") -> str:
    """``url`` if :func:`allowed_url` by ``tasks.http_allowlist``, else :class:`Forbidden`."""
    if not allowed_url(url, settings.http_allowlist):
        raise Forbidden(f"{param} {url!r} is not under a prefix of {ALLOWLIST}", param=param)
    return url


def command_argv(settings: TasksSettings, name: str, args: list[str]) -> list[str]:
    """The argv of ``tasks.commands[name]`` with ``args`` appended (no shell sees them)."""
    argv = settings.commands.get(name)
    if argv is None:
        known = ", ".join(sorted(settings.commands)) or "none configured"
        raise Forbidden(f"command {name!r} is not one of {COMMANDS} ({known})", param="name")
    if any("\x00" in arg for arg in args):
        raise InvalidRequest("an argument holds a NUL character", param="args")
    return [*argv, *args]


class ReadBudget:
    """The bytes a run has read from its file roots (``tasks.limits.max_read_bytes``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    def charge(self, size: int, what: str) -> None:
        if self.used + size > self.limit:
            raise PayloadTooLarge(
                f"reading {what} ({size} bytes) would take the run past {MAX_READ} "
                f"({self.limit} bytes, {self.used} read already)"
            )
        self.used += size


_BUDGETS: collections.OrderedDict[tuple[str, int], ReadBudget] = collections.OrderedDict()
_KEEP = 1024  # attempts whose budgets are remembered (the oldest are forgotten)


def read_budget(ctx: RunContext) -> ReadBudget:
    """The read budget of this attempt of ``ctx``'s run, shared by all its steps and tools."""
    key = (ctx.run_id, ctx.attempt)
    budget = _BUDGETS.get(key)
    if budget is None:
        budget = _BUDGETS[key] = ReadBudget(int(ctx.limits.max_read_bytes))
        while len(_BUDGETS) > _KEEP:
            _BUDGETS.popitem(last=False)
    _BUDGETS.move_to_end(key)
    return budget


class Written:
    """The files of a run's output folder and their sizes: the folder is walked once per
    attempt (and again after a command, which may write there), then kept up to date by
    :func:`record_write`, so many writes do not each walk a growing folder."""

    def __init__(self, folder: Path) -> None:
        self.sizes: dict[Path, int] = {}
        for where, _dirs, names in os.walk(folder.resolve(), followlinks=False):
            for name in names:
                path = Path(where, name)
                with contextlib.suppress(OSError):
                    self.sizes[path] = path.lstat().st_size
        self.total = sum(self.sizes.values())

    def set(self, path: Path, size: int) -> None:
        self.total += size - self.sizes.get(path, 0)
        self.sizes[path] = size


_WRITTEN: collections.OrderedDict[tuple[str, int], Written] = collections.OrderedDict()


def _written(ctx: RunContext) -> Written:
    key = (ctx.run_id, ctx.attempt)
    state = _WRITTEN.get(key)
    if state is None:
        state = _WRITTEN[key] = Written(ctx.output_dir)
        while len(_WRITTEN) > _KEEP:
            _WRITTEN.popitem(last=False)
    _WRITTEN.move_to_end(key)
    return state


def forget_writes(ctx: RunContext) -> None:
    """The output folder changed behind our back (a command ran there): walk it again."""
    _WRITTEN.pop((ctx.run_id, ctx.attempt), None)


def check_write(ctx: RunContext, target: Path, size: int) -> None:
    """Refuse a write of ``size`` bytes to ``target`` (resolved) past
    ``tasks.limits.max_write_bytes`` or, for a new file, ``tasks.limits.max_output_files``."""
    state = _written(ctx)
    limit, files = int(ctx.limits.max_write_bytes), ctx.limits.max_output_files
    if target not in state.sizes and len(state.sizes) >= files:
        raise PayloadTooLarge(
            f"the run's output folder holds {len(state.sizes)} files already: "
            f"{MAX_OUTPUT_FILES} is {files}"
        )
    used = state.total - state.sizes.get(target, 0)
    if used + size > limit:
        raise PayloadTooLarge(
            f"writing {size} bytes would take the run's output past {MAX_WRITE} "
            f"({limit} bytes, {used} written already)"
        )


def record_write(ctx: RunContext, target: Path, size: int) -> None:
    """``target`` (resolved) now holds ``size`` bytes."""
    _written(ctx).set(target, size)


def check_count(count: int, limit: int, what: str) -> None:
    """Refuse more than ``tasks.limits.max_files`` files."""
    if count > limit:
        raise PayloadTooLarge(f"{what} matches {count} files, more than {MAX_FILES} ({limit})")


def cut(text: str, limit: int, setting: str) -> str:
    """``text`` cut to ``limit`` characters, saying where and by which setting."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... cut at {limit} characters: {setting}]"
