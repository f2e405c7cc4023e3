"""An agent task on the real embedded default model (Qwen2.5-Coder-1.5B on the CPU): a
two-step run — an ``agent`` step that reads a file with the ``read_file`` tool, then an
``llm`` step that summarises what it found — through a real gateway's TaskService.

The tiny SmolLM2 of the other engine tests never sees tools (its chat template has
none), so this one test takes the default model, prepared as ``test_default_model``
prepares it. Temperature 0. The file holds a fact the model cannot know otherwise; the
summary must repeat it, and the run's events must show the real ``read_file`` call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engine.conftest import prepare
from tests.engine.test_default_model import QWEN
from tests.gateway import run_gateway

pytestmark = pytest.mark.default_model

REPORT = (
    "Incident report 2026-11-30.\n"
    "The nightly backup of the Oslo warehouse failed at 02:14 because tape drive "
    "number 7 was full. Nobody was paged. The backup was rerun by hand at 09:30.\n"
)
DEFINITION: dict[str, Any] = {
    "name": "read-and-summarise",
    "description": "read a report with a tool, then summarise it",
    "params": {},
    "steps": [
        {"id": "read", "kind": "agent", "tools": ["read_file"], "max_turns": 3,
         "temperature": 0, "max_tokens": 96,
         "goal": "Call the read_file tool with root \"notes\" and path \"report.txt\", "
                 "then tell me what the report says."},
        {"id": "sum", "kind": "llm", "temperature": 0, "max_tokens": 80,
         "prompt": "Summarise this incident in one sentence:\n\n{{ steps.read.text }}"},
    ],
}  # fmt: skip


def wait(client: httpx.Client, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/runs/{run_id}")
        assert reply.status_code == 200, reply.text
        run: dict[str, Any] = reply.json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} stayed {run['status']}"
        time.sleep(0.25)


def test_the_default_model_reads_a_file_with_a_tool_and_summarises_it(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.txt").write_text(REPORT)
    prepare(tmp_path, QWEN)
    config = {
        "engine": {"embeddings": False, "ocr": False},
        "tasks": {"file_roots": {"notes": str(notes)}, "poll_interval_s": 0.2},
    }
    with (
        run_gateway(tmp_path, config, timeout=120) as gateway,
        httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as client,
    ):
        reply = client.post("/api/runs", json={"definition": DEFINITION})
        assert reply.status_code == 202, reply.text
        run = wait(client, reply.json()["id"], timeout=240)  # a guard against a hang
        events = client.get(f"/api/runs/{run['id']}/events").json()["data"]

    assert run["status"] == "succeeded", (run["error"], events)
    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls, events
    first = calls[0]
    assert (first["step"], first["name"]) == ("read", "read_file")
    assert first["arguments"] == {"root": "notes", "path": "report.txt"}
    assert "tape drive number 7" in first["result"]
    summary = run["result"]["text"]
    assert "Oslo" in summary, summary
    assert run["usage"]["total_tokens"] > 0
