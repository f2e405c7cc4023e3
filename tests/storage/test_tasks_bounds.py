"""Output files of a run: only plain relative names under the run's folder; anything
else (a NUL, ``..``, an absolute path, a symlink out) is 404, never a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from enclave.config import Settings
from enclave.errors import NotFound
from enclave.identity import Actor
from enclave.store.repos import Store
from enclave.taskconfig import TasksSettings
from enclave.tasks.service import Caller, TaskService

ANN = Caller(user="ann", admin=False, actor=Actor(user="ann"))
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]


async def no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("no model calls here")


async def test_output_file_names_that_are_not_files_are_404(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, tasks=TasksSettings())
    svc = TaskService(
        store, lambda: settings, chat=no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
        audit=None, home=tmp_path,
    )  # fmt: skip
    run = await svc.submit(ANN, definition={"name": "t", "steps": [{"id": "a", "kind": "noop"}]})
    folder = svc.outputs() / run.id
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("ok")
    (tmp_path / "secret").write_text("no")
    (folder / "out").symlink_to(tmp_path)
    assert await svc.output_file(ANN, run.id, "report.md") == (folder / "report.md").resolve()
    for bad in ["a\x00b", "../secret", "/etc/passwd", "out/secret", "", ".", "x" * 5000]:
        with pytest.raises(NotFound):
            await svc.output_file(ANN, run.id, bad)


async def test_a_template_too_big_fails_its_step_naming_the_limit(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, tasks=TasksSettings())
    svc = TaskService(
        store, lambda: settings, chat=no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
        audit=None, home=tmp_path,
    )  # fmt: skip
    await svc.start()
    try:
        step = {"id": "a", "kind": "sleep", "seconds": 0, "progress": '{{ "x" * 10**7 }}'}
        run = await svc.submit(ANN, definition={"name": "t", "steps": [step]})
        async with asyncio.timeout(60):
            events = [event async for event in svc.follow(ANN, run.id)]
    finally:
        await svc.aclose()
    assert events[-1].data["status"] == "failed"
    (error,) = [e for e in events if e.type == "error"]
    assert "tasks.limits.template_chars" in error.data["message"]
