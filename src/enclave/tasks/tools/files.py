"""Tools over files: ``read_file`` and ``list_files`` in a folder of ``tasks.file_roots``,
``write_file`` in the run's output folder — the same checks as the step kinds."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.errors import NotFound
from enclave.tasks import safety
from enclave.tasks.registry import Tool
from enclave.tasks.steps.files import matching_files, read_text, write_output

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext


class ReadArgs(BaseModel):
    root: str = Field(description="the folder's name (one of tasks.file_roots)")
    path: str = Field(description="the file, relative to that folder")


class ListArgs(BaseModel):
    root: str = Field(description="the folder's name (one of tasks.file_roots)")
    glob: str = Field("**/*", description="which files, e.g. '*.log' or 'src/**/*.py'")


class WriteArgs(BaseModel):
    path: str = Field(description="relative to the run's output folder")
    content: str = Field(description="the text to write")


def _read(ctx: RunContext, args: ReadArgs) -> str:
    root = safety.file_root(ctx.settings, args.root)
    path = safety.resolve_under(root, args.path)
    if not path.is_file():
        raise NotFound(f"there is no file {args.path!r} in {args.root!r}", param="path")
    budget = safety.read_budget(ctx)
    return read_text(path, budget, args.path, budget.left)[0]


def _list(ctx: RunContext, args: ListArgs) -> str:
    root = safety.file_root(ctx.settings, args.root)
    patterns = safety.Patterns.of(ctx.limits)
    paths = matching_files(root, args.glob, ctx.limits.max_files, patterns=patterns)
    lines = [f"{p.relative_to(root).as_posix()}\t{p.stat().st_size} bytes" for p in paths]
    return "\n".join(lines) or f"no file in {args.root!r} matches {args.glob!r}"


async def _read_file(ctx: RunContext, args: ReadArgs) -> str:
    return await asyncio.to_thread(_read, ctx, args)


async def _list_files(ctx: RunContext, args: ListArgs) -> str:
    return await asyncio.to_thread(_list, ctx, args)


async def _write_file(ctx: RunContext, args: WriteArgs) -> str:
    path, size = await asyncio.to_thread(write_output, ctx, args.path, args.content)
    return f"wrote {size} bytes to {path}"


READ_FILE = Tool(
    name="read_file",
    description="Read a text file from one of the folders the administrator allowed.",
    parameters=ReadArgs,
    run=_read_file,
)
LIST_FILES = Tool(
    name="list_files",
    description="List the files (path and size) of an allowed folder that match a glob.",
    parameters=ListArgs,
    run=_list_files,
)
WRITE_FILE = Tool(
    name="write_file",
    description="Write a text file (a result of the task) to the run's output folder.",
    parameters=WriteArgs,
    run=_write_file,
)
