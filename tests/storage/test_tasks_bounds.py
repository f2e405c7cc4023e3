"""Output files of a run: only plain relative names under the run's folder; anything
else (a NUL, ``..``, an absolute path, a symlink out) is 404, never a 500."""

from __future__ import annotations

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
