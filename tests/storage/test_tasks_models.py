"""A run may use only the models its submitter's key and user may use (as on /v1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from enclave.config import Settings
from enclave.identity import Actor
from enclave.store.repos import Store
from enclave.taskconfig import TasksSettings
from enclave.tasks.service import Caller, TaskService

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]
SCOPED = Caller(user="ann", admin=False, actor=Actor(user="ann"), models=("fake-*",))


async def answer(body: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}], "model": body["model"],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip


async def test_a_model_outside_the_submitters_scope_is_refused(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, tasks=TasksSettings())
    svc = TaskService(store, lambda: settings, chat=answer, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
                      audit=None, home=tmp_path)  # fmt: skip
    await svc.start()
    try:
        outcome = {}
        for model in ("fake-model", "other-model"):
            step = {"id": "ask", "kind": "llm", "prompt": "hi", "model": model}
            run = await svc.submit(SCOPED, definition={"name": "ask", "steps": [step]})
            async with asyncio.timeout(60):
                events = [e async for e in svc.follow(SCOPED, run.id)]
            outcome[model] = (await svc.get_run(SCOPED, run.id)), events
    finally:
        await svc.aclose()
    assert outcome["fake-model"][0].status == "succeeded"
    refused, events = outcome["other-model"]
    assert refused.status == "failed"
    assert refused.error is not None
    assert "other-model" in refused.error["message"]
    assert refused.error["type"] == "permission_error", refused.error
    assert any(e.type == "error" for e in events)
