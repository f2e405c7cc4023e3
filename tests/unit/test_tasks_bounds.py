"""Bounds of what a task's input can cost or reach: percent-encoded dot segments in URLs,
patterns (globs and ``match``) that backtrack, old files beyond ``max_files``, ``head``,
output files that are not plain names, leftover children of commands, the output
folder's file count, and templates that would run or grow without end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from enclave.taskconfig import TasksSettings
from enclave.tasks import safety
from tests.taskctx import RecordingContext, run_step

pytestmark = pytest.mark.anyio


def test_percent_encoded_dot_segments_do_not_pass_the_allowlist() -> None:
    allow = ["http://wiki/api/"]
    bad = ["http://wiki/api/%2e%2e/admin", "http://wiki/api/%2E%2e/admin",
           "http://wiki/api/..%2fadmin", "http://wiki/api/..%5Cadmin",
           "http://wiki/api/%252e%252e/admin", "http://wiki/api/..;x/admin",
           "http://wiki/api/x/%2e%2e/%2e%2e/admin"]  # fmt: skip
    assert [u for u in bad if safety.allowed_url(u, allow)] == []
    good = ["http://wiki/api/a%2fb", "http://wiki/api/x/%2e%2e/y", "http://wiki/api/v?q=%2e%2e"]
    assert [u for u in good if not safety.allowed_url(u, allow)] == []


async def test_children_left_by_a_command_that_exited_are_killed(tmp_path: Path) -> None:
    script = "sleep 600 >/dev/null 2>&1 & echo $!"
    ctx = RecordingContext(tmp_path / "home", TasksSettings(commands={"fork": ["sh", "-c", script]}))
    out = await run_step(ctx, "command", name="fork")
    pid = int(out["stdout"])
    deadline = time.monotonic() + 10
    while alive(pid):  # killed; reaped by init (a zombie until then)
        assert time.monotonic() < deadline, "the command's child outlived it"
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
