"""Bounds of what a task's input can cost or reach: percent-encoded dot segments in URLs,
patterns (globs and ``match``) that backtrack, old files beyond ``max_files``, ``head``,
output files that are not plain names, leftover children of commands, the output
folder's file count, and templates that would run or grow without end."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from enclave.errors import EnclaveError, InvalidRequest, PayloadTooLarge
from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks import registry, safety, templating
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
    settings = TasksSettings(commands={"fork": ["sh", "-c", script]})
    ctx = RecordingContext(tmp_path / "home", settings)
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


# --- patterns, since_hours, head ---------------------------------------------------------


def reader(tmp_path: Path, **limits: Any) -> RecordingContext:
    settings = TasksSettings(file_roots={"logs": tmp_path / "logs"}, limits=TaskLimits(**limits))
    return RecordingContext(tmp_path / "home", settings)


async def refusal(ctx: RecordingContext, **options: Any) -> EnclaveError:
    with pytest.raises(EnclaveError) as caught:
        await run_step(ctx, "read_files", root="logs", **options)
    assert caught.value.status < 500
    return caught.value


async def test_patterns_are_bounded_in_size_and_time(tmp_path: Path) -> None:
    (tmp_path / "logs" / "d").mkdir(parents=True)
    (tmp_path / "logs" / "d" / "x.log").write_text("a" * 40 + "b\nERROR\n")
    ctx = reader(tmp_path, pattern_seconds=0.3)
    error = await refusal(ctx, glob="**/*.log", match="^(a|aa)+$")  # backtracks for hours
    assert (error.param, "tasks.limits.pattern_seconds" in error.message) == ("match", True)
    error = await refusal(ctx, glob="**/" * 10 + "x/**/y/**/z/**/w/**/*.log")
    assert (error.param, "tasks.limits.pattern_globstars" in error.message) == ("glob", True)
    out = await run_step(ctx, "read_files", root="logs", glob="**/**/**/**/**/**/*.log")
    assert [f["path"] for f in out["files"]] == ["d/x.log"]  # consecutive '**' are one
    error = await refusal(ctx, glob="[z-a].log")
    assert (error.param, type(error)) == ("glob", InvalidRequest)
    error = await refusal(ctx, glob="*.log", match="(")
    assert (error.param, type(error)) == ("match", InvalidRequest)
    error = await refusal(ctx, glob="*.log", match="a" * 1001)
    assert (error.param, "tasks.limits.pattern_chars" in error.message) == ("match", True)
    with pytest.raises(InvalidRequest, match=r"tasks\.limits\.pattern_globstars"):
        await call_tool(ctx, "list_files", root="logs", glob="**/a/" * 6 + "*")


async def test_old_files_do_not_count_toward_max_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = time.time() - 48 * 3600
    for index in range(5):
        (logs / f"app.log.{index}").write_text("ERROR old\n")
        os.utime(logs / f"app.log.{index}", (old, old))
    (logs / "app.log").write_text("ERROR new\n")
    out = await run_step(reader(tmp_path, max_files=2), "read_files", root="logs",
                         glob="app.log*", since_hours=24)  # fmt: skip
    assert [f["path"] for f in out["files"]] == ["app.log"]


async def test_head_reads_only_what_it_keeps(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "big.txt").write_text("é" * 5000)  # 10000 bytes
    ctx = reader(tmp_path, max_read_bytes=1000)
    out = await run_step(ctx, "read_files", root="logs", glob="*.txt", head=10)
    assert out["text"] == "## big.txt\n" + "é" * 10
    assert out["files"][0]["bytes"] == 40
    assert safety.read_budget(ctx).used == 40


async def call_tool(ctx: RecordingContext, name: str, **arguments: Any) -> str:
    tool = registry.tool(name)
    assert tool is not None
    return await tool.run(ctx, tool.parameters.model_validate(arguments))


# --- the output folder -------------------------------------------------------------------


async def test_output_files_are_counted_without_walking_the_folder(tmp_path: Path) -> None:
    limits = TaskLimits(max_output_files=3, max_write_bytes=100)
    settings = TasksSettings(commands={"touch": ["touch", "by-command.txt"]}, limits=limits)
    ctx = RecordingContext(tmp_path / "home", settings)
    for name in ["a.md", "b.md"]:
        await run_step(ctx, "write_file", path=name, content="x" * 40)
    await run_step(ctx, "write_file", path="a.md", content="y" * 60)  # replaced: 60 + 40
    with pytest.raises(PayloadTooLarge, match=r"tasks\.limits\.max_write_bytes"):
        await run_step(ctx, "write_file", path="a.md", content="y" * 61)
    await run_step(ctx, "command", name="touch")  # a third file, made by a command
    with pytest.raises(PayloadTooLarge, match=r"tasks\.limits\.max_output_files"):
        await call_tool(ctx, "write_file", path="c.md", content="")
    await run_step(ctx, "write_file", path="b.md", content="")  # replacing is fine


# --- templates ---------------------------------------------------------------------------


def test_templates_are_bounded_in_output_time_and_memory() -> None:
    limits = TaskLimits(template_seconds=0.5)
    plain = {"prompt": "no template here", "n": [1, "2"]}
    assert templating.render(plain, {}, "steps[0]", limits) is plain  # no child asked
    cases = [
        ('{{ "x" * 10**7 }}', PayloadTooLarge, "tasks.limits.template_chars"),
        ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
         InvalidRequest, "tasks.limits.template_seconds"),
        ('{{ "x" * 10**10 }}', PayloadTooLarge, "tasks.limits.template_memory"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(0) }}", InvalidRequest, "recursion"),
        ("{{ nope }}", InvalidRequest, "'nope' is undefined"),
    ]  # fmt: skip
    for template, error, says in cases:
        with pytest.raises(error) as caught:
            templating.render({"prompt": [template]}, {}, "steps[1]", limits)
        assert caught.value.param in {"steps[1]", "steps[1].prompt[0]"}, template
        assert says in caught.value.message, template
    assert templating.render("{{ 6 * 7 }}", {}, "x", limits) == "42"  # a new child serves
    with pytest.raises(InvalidRequest) as caught:  # deep nesting does not parse: a 400
        templating.check({"prompt": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"}, "steps[0]")
    assert caught.value.param == "steps[0].prompt"
