"""What a run's events say about its agent steps and its errors, through the real
TaskService on SQLite and PostgreSQL: a ``tool_call`` event names the step it was made
in, and an ``error`` event keeps the error's type (``error_type``; the event's own
``type`` is ``error``) as the run's ``error`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enclave.config import Settings
from enclave.store.repos import Store
from enclave.taskconfig import TasksSettings
from enclave.tasks.info import Event
from enclave.tasks.service import TaskService
from tests.storage.test_tasks_core import ANN, finished, service, steps

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]


def answer(message: dict[str, Any]) -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    return {"choices": [{"index": 0, "message": message}], "usage": usage}


async def test_tool_call_events_name_their_step(store: Store, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    replies = [
        answer({"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "list_files", "arguments": '{"root": "files"}'}}]}),
        answer({"role": "assistant", "content": "One file."}),
    ]  # fmt: skip

    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        return replies.pop(0)

    home = tmp_path / "home"
    settings = Settings(home=home, tasks=TasksSettings(file_roots={"files": tmp_path}))
    tasks = TaskService(store, lambda: settings, chat=chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
                        audit=None, home=home)  # fmt: skip
    await tasks.start()
    try:
        agent = {"id": "look", "kind": "agent", "goal": "list", "tools": ["list_files"]}
        definition = {"name": "t", "steps": [{"id": "first", "kind": "noop"}, agent]}
        events = await finished(tasks, await tasks.submit(ANN, definition=definition), ANN)
        run = await tasks.get_run(ANN, events[0].run)
    finally:
        await tasks.aclose()
    assert run.status == "succeeded", run.error
    (call,) = [e.public() for e in events if e.type == "tool_call"]
    assert (call["step"], call["name"]) == ("look", "list_files")
    assert "notes.txt" in call["result"]


def errors(events: list[Event]) -> list[dict[str, Any]]:
    return [e.public() for e in events if e.type == "error"]


async def test_error_events_keep_the_errors_type(store: Store, tmp_path: Path) -> None:
    tasks = service(store, tmp_path)
    too_long = {"kind": "sleep", "seconds": 5, "progress": False}  # over the timeout: refused
    queued = await tasks.submit(ANN, definition=steps({"kind": "noop"}))
    await tasks.cancel(ANN, queued.id)  # not started yet: cancelled at once
    await tasks.start()
    try:
        failing = await tasks.submit(ANN, definition=steps(too_long, limits={"timeout_s": 1}))
        failed_events = await finished(tasks, failing, ANN)
        cancelled_events = await finished(tasks, queued, ANN)
        failed = await tasks.get_run(ANN, failing.id)
        cancelled = await tasks.get_run(ANN, queued.id)
    finally:
        await tasks.aclose()
    assert failed.error is not None
    assert failed.error["type"] == "invalid_request_error"
    (event,) = errors(failed_events)
    assert event["type"] == "error"
    assert event["error_type"] == "invalid_request_error"
    assert event["message"] == failed.error["message"]
    assert cancelled.error == {"message": "cancelled before it started", "type": "cancelled"}
    assert [(e["type"], e["error_type"]) for e in errors(cancelled_events)] == [
        ("error", "cancelled")
    ]


def test_an_error_event_stored_before_error_type_reads_the_same() -> None:
    from datetime import UTC, datetime

    old = Event(3, "run_0", "error", datetime(2026, 1, 1, tzinfo=UTC),
                {"message": "boom", "type": "upstream_error"})  # fmt: skip
    assert old.public() == {"message": "boom", "error_type": "upstream_error", "id": 3,
                            "run": "run_0", "type": "error",
                            "at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
