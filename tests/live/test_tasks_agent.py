"""The agent loop's way out of a small model's loops, driven by the fake upstream's
scripted tool calls: a turn whose calls all repeat earlier ones (same tool, same
arguments) is not run again, and the next turn asks for the answer without tools; so
does the last allowed turn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks.agent import ANSWER_NOW
from tests.fakes.procs import FakeUpstream
from tests.taskctx import RecordingContext, run_step

pytestmark = [pytest.mark.anyio, pytest.mark.fake_upstream(models=("default",))]


@pytest.fixture
def ctx(tmp_path: Path, upstream: str) -> RecordingContext:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "web.log").write_text("ERROR db down\n")
    settings = TasksSettings(file_roots={"logs": logs}, limits=TaskLimits(agent_max_turns=4))
    context = RecordingContext(tmp_path / "home", settings, upstream)
    context.step = "look"
    return context


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


async def test_a_repeated_call_is_not_run_again_and_the_answer_is_asked_without_tools(
    fake: FakeUpstream, ctx: RecordingContext
) -> None:
    fake.configure(replies=[
        {"tool_calls": [call("read_file", '{"root": "logs", "path": "web.log"}')]},
        {"tool_calls": [call("read_file", '{"path": "web.log", "root": "logs"}')]},  # again
        {"content": "The database went down."},
    ])  # fmt: skip
    out = await run_step(ctx, "agent", goal="What failed?", tools=["read_file"])
    assert out == {"text": "The database went down.", "turns": 3, "tool_calls": 1}
    assert [(e["step"], e["name"], e["result"]) for e in ctx.of("tool_call")] == [
        ("look", "read_file", "ERROR db down\n")
    ]
    first, second, third = fake.requests()
    assert "tools" in first
    assert "tools" in second
    assert "tools" not in third
    messages = third["messages"]
    assert messages[-1] == {"role": "user", "content": ANSWER_NOW}
    assert messages[-2] == {"role": "tool", "tool_call_id": "call_1",
                            "content": "ERROR db down\n"}  # fmt: skip
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]


async def test_the_last_allowed_turn_offers_no_tools(
    fake: FakeUpstream, ctx: RecordingContext
) -> None:
    fake.configure(replies=[
        {"tool_calls": [call("list_files", '{"root": "logs"}')]},
        {"content": "One log: web.log."},
    ])  # fmt: skip
    out = await run_step(ctx, "agent", goal="List the logs.", tools=["list_files"], max_turns=2,
                         temperature=0, max_tokens=50)  # fmt: skip
    assert out == {"text": "One log: web.log.", "turns": 2, "tool_calls": 1}
    first, last = fake.requests()
    assert (first["temperature"], first["max_tokens"]) == (last["temperature"], 50) == (0, 50)
    assert "tools" in first
    assert "tools" not in last
    assert last["messages"][-1] == {"role": "user", "content": ANSWER_NOW}


async def test_tool_calls_past_the_limit_are_not_run_and_the_answer_is_asked(
    tmp_path: Path, fake: FakeUpstream, upstream: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("a.log", "b.log", "c.log"):
        (logs / name).write_text(f"{name} ok\n")
    limits = TaskLimits(agent_max_turns=4, agent_max_tool_calls=2)
    ctx = RecordingContext(
        tmp_path / "home", TasksSettings(file_roots={"logs": logs}, limits=limits), upstream
    )
    fake.configure(replies=[
        {"tool_calls": [call("read_file", f'{{"root": "logs", "path": "{n}.log"}}')
                        for n in "abc"]},
        {"content": "All three are fine."},
    ])  # fmt: skip
    out = await run_step(ctx, "agent", goal="Check the logs", tools=["read_file"])
    assert out["tool_calls"] == 2
    assert [e["result"] for e in ctx.of("tool_call")] == ["a.log ok\n", "b.log ok\n"]
    first, second = fake.requests()
    assert "tools" in first
    told = [m["content"] for m in second["messages"] if m["role"] == "tool"]
    assert told[:2] == ["a.log ok\n", "b.log ok\n"]
    assert "tasks.limits.agent_max_tool_calls" in told[2]
    assert "tools" not in second  # asked for the answer
