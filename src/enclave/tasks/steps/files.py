"""``read_files``: text from a folder of ``tasks.file_roots``; ``write_file``: a result.

Both go through :mod:`enclave.tasks.safety`: reads stay under the named root (no
absolute path, ``..`` or symlink out) within ``tasks.limits.max_files`` and the run's
``max_read_bytes``; writes stay under the run's output folder within ``max_write_bytes``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from enclave.errors import Forbidden, InvalidRequest, PayloadTooLarge
from enclave.tasks import safety
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext


class ReadOptions(Options):
    root: str = Field(description="a folder of tasks.file_roots, by name")
    glob: str = Field("*", description="files to read, relative to the root (** for any depth)")
    match: str | None = Field(
        None, description="a regular expression: keep only matching lines (and context)"
    )
    context: int = Field(0, ge=0, le=50, description="lines kept around each matching line")
    since_hours: float | None = Field(
        None, gt=0, description="only files modified within this many hours"
    )
    max_bytes: int | None = Field(
        None, ge=1, description="bytes this step may read (at most the run's budget left)"
    )
    head: int | None = Field(None, ge=1, description="keep only this many characters of a file")


class WriteOptions(Options):
    path: str = Field(description="relative to the run's output folder")
    content: str = Field(description="the text to write (UTF-8)")


@dataclass(frozen=True)
class ReadFile:
    path: str  # relative to its root, POSIX
    bytes: int
    lines: int  # lines kept in the text
    text: str


def matching_files(
    root: Path, pattern: str, limit: int, *, since: float | None = None,
    patterns: safety.Patterns | None = None,
) -> list[Path]:  # fmt: skip
    """Regular files under ``root`` matching ``pattern`` (:func:`safety.find_files`),
    modified after ``since`` if given (old files do not count toward ``limit``)."""
    return safety.find_files(root, pattern, limit, since=since, patterns=patterns)


def read_text(
    path: Path, budget: safety.ReadBudget, shown: str, limit: int, *, head: int | None = None
) -> tuple[str, int]:
    """The file's text (UTF-8, bad bytes replaced) and its size, charged to ``budget``;
    more than ``limit`` bytes (a log may grow while it is read) is refused. With ``head``,
    only the bytes that many characters can take (4 each) are read and charged."""
    cap = head * 4 if head is not None and head * 4 <= limit else None
    with path.open("rb") as file:
        data = file.read(limit + 1 if cap is None else cap)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{shown} has more bytes than this step may still read ({limit} bytes: the "
            f"step's max_bytes or what is left of {safety.MAX_READ})"
        )
    budget.charge(len(data), shown)
    return data.decode("utf-8", errors="replace"), len(data)


def kept_lines(
    text: str, match: Any, context: int, patterns: safety.Patterns | None = None
) -> list[str]:
    """All lines, or (with ``match``, compiled by :class:`safety.Patterns`) the matching
    ones and ``context`` around each, numbered, with ``--`` between runs that are apart."""
    lines = text.splitlines()
    if match is None:
        return lines
    patterns = patterns or safety.Patterns()
    keep: set[int] = set()
    for index, line in enumerate(lines):
        if patterns.run(match.search, line, "match"):
            keep.update(range(max(index - context, 0), min(index + context + 1, len(lines))))
    out: list[str] = []
    previous = -2
    for index in sorted(keep):
        if out and index != previous + 1:
            out.append("--")
        out.append(f"{index + 1}: {lines[index]}")
        previous = index
    return out


def read_files(ctx: RunContext, opts: ReadOptions) -> list[ReadFile]:
    root = safety.file_root(ctx.settings, opts.root)
    since = time.time() - opts.since_hours * 3600 if opts.since_hours else None
    patterns = safety.Patterns.of(ctx.limits)
    match = None if opts.match is None else patterns.compile(opts.match, "match")
    paths = matching_files(root, opts.glob, ctx.limits.max_files, since=since,
                           patterns=patterns)  # fmt: skip
    budget = safety.read_budget(ctx)
    step_left = min(opts.max_bytes or budget.limit, budget.left)
    files = []
    for path in paths:
        shown = path.relative_to(root).as_posix()
        text, size = read_text(path, budget, shown, max(step_left, 0), head=opts.head)
        step_left -= size
        text = text[: opts.head] if opts.head else text
        lines = kept_lines(text, match, opts.context, patterns)
        if match is not None and not lines:
            continue
        count = len(lines) if match is None else sum(line != "--" for line in lines)
        files.append(ReadFile(shown, size, count, "\n".join(lines)))
    return files


async def _read(ctx: RunContext, opts: ReadOptions) -> dict[str, Any]:
    files = await asyncio.to_thread(read_files, ctx, opts)
    text = "\n\n".join(f"## {f.path}\n{f.text}" for f in files)
    await ctx.progress(message=f"read {len(files)} files")
    listed = [{"path": f.path, "bytes": f.bytes, "lines": f.lines} for f in files]
    return {"files": listed, "text": text}


def write_output(ctx: RunContext, relative: str, content: str) -> tuple[str, int]:
    """Write ``content`` to ``relative`` under the run's output folder; (path, bytes)."""
    base = ctx.output_dir.resolve()
    target = safety.resolve_under(base, relative, setting=safety.OUTPUT)
    if target == base or relative.endswith("/"):
        raise InvalidRequest(f"path {relative!r} names a folder, not a file", param="path")
    data = content.encode("utf-8")
    safety.check_write(ctx, target, len(data))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not safety.inside(base, target.parent):  # a folder made meanwhile is a symlink out
        raise Forbidden(f"path {relative!r} leads out of the output folder")
    target.write_bytes(data)
    safety.record_write(ctx, target, len(data))
    ctx.add_output(target)
    return target.relative_to(base).as_posix(), len(data)


async def _write(ctx: RunContext, opts: WriteOptions) -> dict[str, Any]:
    path, size = await asyncio.to_thread(write_output, ctx, opts.path, opts.content)
    return {"path": path, "bytes": size}


READ_FILES = StepKind(
    name="read_files",
    description="read text files of a tasks.file_roots folder, optionally only matching lines",
    options=ReadOptions,
    run=_read,
)
WRITE_FILE = StepKind(
    name="write_file",
    description="write a text file to the run's output folder (a result of the run)",
    options=WriteOptions,
    run=_write,
)
