"""``command``: run a program an administrator named in ``tasks.commands``.

No shell: the argv is the configured one with the step's ``args`` appended, run with
stdin closed, in the run's output folder, with a minimal environment (``PATH``, ``LANG``;
nothing of the gateway's, its secrets included). It is killed — its whole process group
— after ``tasks.command_timeout_s`` or when the run is cancelled. stdout and stderr are
kept up to ``tasks.command_output_bytes`` each, the rest read and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from enclave.errors import UpstreamError, UpstreamTimeout
from enclave.tasks import safety
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext

CHUNK = 65536


class CommandOptions(Options):
    name: str = Field(description="a program of tasks.commands, by name")
    args: list[str] = Field(default_factory=list, description="appended to its argv")
    check: bool = Field(True, description="fail the step when it exits with non-zero")


@dataclass(frozen=True)
class Finished:
    exit_code: int
    stdout: str
    stderr: str

    def output(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr}


async def _drain(stream: asyncio.StreamReader | None, limit: int) -> str:
    kept = bytearray()
    dropped = 0
    while stream is not None and (piece := await stream.read(CHUNK)):
        room = limit - len(kept)
        kept += piece[:room]
        dropped += max(len(piece) - room, 0)
    text = kept.decode("utf-8", errors="replace")
    if dropped:
        text += f"\n[... {dropped} more bytes dropped: tasks.command_output_bytes]"
    return text


def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the command's process group, even when the command itself has exited: the
    children it left behind (``sleep 600 &``) are in that group. The group's id cannot be
    reused while any of them lives, so this never reaches another process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(ctx: RunContext, name: str, args: list[str]) -> Finished:
    """Run ``tasks.commands[name]`` + ``args``; its exit code and (bounded) output."""
    settings = ctx.settings
    argv = safety.command_argv(settings, name, args)
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
    folder = ctx.output_dir
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=folder, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise UpstreamError(f"command {name!r} ({argv[0]}) could not start: {exc}") from exc
    limit = int(settings.command_output_bytes)
    try:
        async with asyncio.timeout(settings.command_timeout_s):
            out, err, code = await asyncio.gather(
                _drain(process.stdout, limit), _drain(process.stderr, limit), process.wait()
            )
    except TimeoutError as exc:
        seconds = settings.command_timeout_s
        raise UpstreamTimeout(
            f"command {name!r} ran longer than tasks.command_timeout_s ({seconds} s); killed"
        ) from exc
    finally:
        _kill(process)  # timed out, cancelled, or children left behind
        await process.wait()
        safety.forget_writes(ctx)  # it may have written to the output folder
    return Finished(code, out, err)


async def _run(ctx: RunContext, opts: CommandOptions) -> dict[str, Any]:
    finished = await run_command(ctx, opts.name, opts.args)
    if opts.check and finished.exit_code != 0:
        raise UpstreamError(f"command {opts.name!r} exited with {finished.exit_code}: "
                            f"{finished.stderr[-300:]}")  # fmt: skip
    return finished.output()


COMMAND = StepKind(
    name="command",
    description="run a program named in tasks.commands (no shell), bounded in time and output",
    options=CommandOptions,
    run=_run,
)
