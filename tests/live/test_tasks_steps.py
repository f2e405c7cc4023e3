"""Step kinds, tools, the agent loop and the built-in templates against real servers: the
fake upstream (over HTTP, scripting the model's tool calls with ``replies``), a loopback
HTTP server for the ``http`` step, and knowledge bases on a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from enclave.config import KnowledgeSettings
from enclave.errors import (
    EnclaveError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    TooManyRequests,
    UpstreamError,
    UpstreamTimeout,
)
from enclave.knowledge.service import KnowledgeBases
from enclave.store.repos import open_store
from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks.templates import builtin
from tests.fakes.procs import FakeUpstream
from tests.helpers import read_request, socket_server
from tests.taskctx import RecordingContext, run_step, run_steps

pytestmark = [pytest.mark.anyio, pytest.mark.fake_upstream(models=("default",))]

WEB_LOG = "boot\nINFO ready\nERROR db down\nretry\nERROR disk full\n"


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    logs = tmp_path / "logs"
    (logs / "app").mkdir(parents=True)
    (logs / "app" / "web.log").write_text(WEB_LOG)
    (logs / "worker.log").write_text("INFO start\nINFO done\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "invoice.md").write_text("# Invoice 17\n\nAmount due: 400 EUR by March.\n")
    (docs / "outage.md").write_text("# Outage\n\nThe database was down for an hour.\n")
    (tmp_path / "secret.txt").write_text("the admin password")
    return {"logs": logs, "docs": docs}


def make_ctx(
    tmp_path: Path, upstream: str, roots: dict[str, Path], **tasks: Any
) -> RecordingContext:
    limits = TaskLimits(**tasks.pop("limits", {}))
    settings = TasksSettings(file_roots=roots, limits=limits, **tasks)
    return RecordingContext(tmp_path / "home", settings, upstream)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


# --- the fake upstream's scripted replies -------------------------------------------------


def test_scripted_tool_calls_reach_the_openai_sdk(fake: FakeUpstream, upstream: str) -> None:
    replies = [{"tool_calls": [call("read_file", root="logs", path="a.log")]},
               {"tool_calls": [call("list_files", root="logs")]}, {"content": "done"}]  # fmt: skip
    fake.configure(replies=replies)
    client = openai.OpenAI(base_url=upstream, api_key="x", http_client=None)
    first = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "go"}]
    )
    (tool_call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert tool_call.function.name == "read_file"  # type: ignore[union-attr]
    assert json.loads(tool_call.function.arguments) == {"root": "logs", "path": "a.log"}  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "go"}], stream=True
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    names = [tc.function.name for d in deltas for tc in d.tool_calls or [] if tc.function]
    assert names == ["list_files"]
    last = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "go"}]
    )
    assert last.choices[0].message.content == "done"
    after = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}]
    )
    assert (after.choices[0].message.content or "").startswith("echo: hi")  # the script is used up


# --- llm ----------------------------------------------------------------------------------


async def test_llm_step_calls_the_model_and_counts_tokens(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    ctx = make_ctx(tmp_path, upstream, roots)
    out = await run_step(ctx, "llm", prompt="say hello", system="be brief", max_tokens=5,
                         temperature=0.2)  # fmt: skip
    assert out["text"] == "echo: say hello images=0 texts=2"
    assert out["usage"]["completion_tokens"] == 5
    body = fake.stats()["last_request"]
    assert body["model"] == "default"
    assert body["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "say hello"}]  # fmt: skip
    assert (body["max_tokens"], body["temperature"]) == (5, 0.2)

    fake.configure(replies=[{"content": 'Here:\n```json\n{"a.md": "billing"}\n```'}])
    out = await run_step(ctx, "llm", prompt="classify", json=True)
    assert out["json"] == {"a.md": "billing"}
    assert fake.stats()["last_request"]["response_format"] == {"type": "json_object"}
    fake.configure(replies=[{"content": "no JSON here"}])
    with pytest.raises(UpstreamError, match="did not answer with JSON"):
        await run_step(ctx, "llm", prompt="classify", json=True)
    with pytest.raises(ValueError, match="exactly one of prompt and messages"):
        await run_step(ctx, "llm")


# --- the agent loop -----------------------------------------------------------------------


async def test_agent_loop_runs_scripted_tool_calls_and_returns_errors_to_the_model(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    fake.configure(replies=[
        {"tool_calls": [call("list_files", root="logs", glob="**/*.log"),
                        call("read_file", root="logs"),                  # no path
                        call("delete_everything"),                       # no such tool
                        {"name": "read_file", "arguments": "{not json"}]},
        {"content": "Let me read it.",
         "tool_calls": [call("read_file", root="logs", path="app/web.log"),
                        call("read_file", root="logs", path="../secret.txt")]},
        {"content": "Two errors: the database went down, then the disk filled up."},
    ])  # fmt: skip
    ctx = make_ctx(tmp_path, upstream, roots)
    ctx.step = "investigate"
    out = await run_step(ctx, "agent", goal="What failed last night?",
                         tools=["list_files", "read_file"])  # fmt: skip
    assert out == {"text": "Two errors: the database went down, then the disk filled up.",
                   "turns": 3, "tool_calls": 6}  # fmt: skip

    events = ctx.of("tool_call")
    assert [(e["step"], e["name"], "error" in e) for e in events] == [
        ("investigate", "list_files", False), ("investigate", "read_file", True),
        ("investigate", "delete_everything", True), ("investigate", "read_file", True),
        ("investigate", "read_file", False), ("investigate", "read_file", True),
    ]  # fmt: skip
    assert events[0]["result"] == "app/web.log\t52 bytes\nworker.log\t21 bytes"
    assert events[0]["arguments"] == {"root": "logs", "glob": "**/*.log"}
    assert events[3]["arguments"] == "{not json"
    assert "path: Field required" in events[1]["error"]
    assert "no tool 'delete_everything'" in events[2]["error"]
    assert "list_files, read_file" in events[2]["error"]
    assert "not JSON" in events[3]["error"]
    assert "'..'" in events[5]["error"]

    turns = fake.requests()
    assert len(turns) == 3
    assert [t["function"]["name"] for t in turns[0]["tools"]] == ["list_files", "read_file"]
    assert turns[0]["tools"][1]["function"]["parameters"]["required"] == ["root", "path"]
    last = turns[2]["messages"]
    assert last[0]["role"] == "system"
    assert last[1] == {"role": "user", "content": "What failed last night?"}
    assert last[2]["role"] == "assistant"
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == [
        "call_1", "call_2", "call_3", "call_4", "call_5", "call_6"]  # fmt: skip
    results = [m["content"] for m in last if m["role"] == "tool"]
    assert results[4] == WEB_LOG
    assert results[5].startswith("error: path '../secret.txt' climbs out")
    assert last[7] == {
        "role": "assistant",
        "content": "Let me read it.",
        "tool_calls": [
            {
                "id": "call_5",
                "type": "function",
                "function": {
                    "name": "read_file",
                    "arguments": '{"root": "logs", "path": "app/web.log"}',
                },
            },
            {
                "id": "call_6",
                "type": "function",
                "function": {
                    "name": "read_file",
                    "arguments": '{"root": "logs", "path": "../secret.txt"}',
                },
            },
        ],
    }


async def test_agent_loop_is_bounded_by_turns_and_tokens(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    looping = [{"tool_calls": [call("list_files", root="logs")]}] * 5
    fake.configure(replies=looping)
    ctx = make_ctx(tmp_path, upstream, roots, limits={"agent_max_turns": 3})
    with pytest.raises(
        TooManyRequests, match=r"within 2 model calls \(tasks.limits.agent_max_turns"
    ):
        await run_step(ctx, "agent", goal="loop", tools=["list_files"], max_turns=2)
    assert len(fake.requests()) == 2
    with pytest.raises(
        InvalidRequest, match=re.escape("over tasks.limits.agent_max_turns")
    ) as caught:
        await run_step(ctx, "agent", goal="loop", tools=["list_files"], max_turns=4)
    assert caught.value.param == "max_turns"
    with pytest.raises(InvalidRequest, match="no tool 'shell'") as caught:
        await run_step(ctx, "agent", goal="loop", tools=["list_files", "shell"])
    assert caught.value.param == "tools[1]"

    fake.configure(replies=looping)
    ctx = make_ctx(tmp_path, upstream, roots, limits={"max_tokens": 60})
    with pytest.raises(TooManyRequests, match=re.escape("tasks.limits.max_tokens")):
        await run_step(ctx, "agent", goal="loop", tools=["list_files"])


async def test_tool_results_are_cut_for_the_model(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    (roots["logs"] / "big.log").write_text("x" * 5000)
    fake.configure(replies=[{"tool_calls": [call("read_file", root="logs", path="big.log")]},
                            {"content": "ok"}])  # fmt: skip
    ctx = make_ctx(tmp_path, upstream, roots, limits={"tool_result_chars": 100})
    await run_step(ctx, "agent", goal="read", tools=["read_file"])
    tool_message = fake.requests()[1]["messages"][-1]
    assert tool_message["content"] == "x" * 100 + (
        "\n[... cut at 100 characters: tasks.limits.tool_result_chars]"
    )


# --- http ---------------------------------------------------------------------------------


@pytest.fixture
async def intranet() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A loopback server: /api/data (JSON echo), /api/in and /api/out (redirects),
    /api/big, /api/missing (404), /api/slow (answers once the event is set)."""
    release = asyncio.Event()
    bound: dict[str, int] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        method, path, _ = raw.split(b"\r\n", 1)[0].decode().split(" ")
        body = raw.split(b"\r\n\r\n", 1)[1].decode()
        status, headers, content = 200, {"content-type": "application/json"}, b""
        if path == "/api/data":
            content = json.dumps({"method": method, "body": body}).encode()
        elif path == "/api/in":
            status, headers = 302, {"location": "/api/data"}
        elif path == "/api/out":
            status, headers = 307, {"location": f"http://127.0.0.1:{bound['port']}/admin"}
        elif path == "/api/big":
            content = b"x" * 5000
        elif path == "/api/slow":
            await release.wait()
        else:
            status = 404
        head = [f"HTTP/1.1 {status} X", f"content-length: {len(content)}", "connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + content)
        with contextlib.suppress(ConnectionError):  # /api/slow: the client has gone
            await writer.drain()
        writer.close()

    async with socket_server(handler) as port:
        bound["port"] = port
        try:
            yield port, release
        finally:
            release.set()


async def test_http_step_within_allowlist_size_and_time(
    intranet: tuple[int, asyncio.Event], tmp_path: Path, roots: dict[str, Path]
) -> None:
    port, _release = intranet
    base = f"http://127.0.0.1:{port}"
    ctx = make_ctx(tmp_path, "", roots, http_allowlist=[f"{base}/api/"], http_timeout_s=0.5,
                   http_max_bytes=1000)  # fmt: skip
    out = await run_step(ctx, "http", url=f"{base}/api/data", method="POST", json={"a": 1})
    assert out["status"] == 200
    assert out["json"] == {"method": "POST", "body": '{"a": 1}'}
    followed = await run_step(ctx, "http", url=f"{base}/api/in", method="POST", json={"a": 1})
    assert followed["json"] == {"method": "GET", "body": ""}  # a 302 turns POST into GET

    async def refused(path: str, **options: Any) -> EnclaveError:
        with pytest.raises(EnclaveError) as caught:
            await run_step(ctx, "http", url=f"{base}{path}", **options)
        return caught.value

    error = await refused("/admin")
    assert isinstance(error, Forbidden)
    assert "tasks.http_allowlist" in error.message
    error = await refused("/api/out")
    assert isinstance(error, Forbidden)
    assert "redirect" in error.message
    assert "tasks.http_allowlist" in error.message
    error = await refused("/api/big")
    assert isinstance(error, PayloadTooLarge)
    assert "tasks.http_max_bytes" in error.message
    error = await refused("/api/data", headers={"Host": "elsewhere.example"})
    assert error.param == "headers"
    error = await refused("/api/missing")
    assert "answered 404" in error.message
    assert (await run_step(ctx, "http", url=f"{base}/api/missing", check=False))["status"] == 404
    error = await refused("/api/slow")
    assert isinstance(error, UpstreamTimeout)
    assert "tasks.http_timeout_s" in error.message


# --- knowledge bases and the built-in templates ----------------------------------------------


@pytest.fixture
async def kbs(
    upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> AsyncIterator[KnowledgeBases]:
    """Knowledge bases on SQLite whose embedder is the fake's /v1/embeddings."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}")
    try:
        service = KnowledgeBases(store, KnowledgeSettings())
        await service.create("docs", embedder=upstream, model="default")
        await service.add_paths("docs", [roots["docs"]])
        yield service
    finally:
        await store.aclose()


async def test_kb_search_step_tool_and_the_search_template(
    upstream: str, tmp_path: Path, roots: dict[str, Path], kbs: KnowledgeBases
) -> None:
    ctx = make_ctx(tmp_path, upstream, roots)
    ctx.kbs = kbs
    out = await run_step(ctx, "kb_search", kb="docs", query="database down", k=2, mode="keyword")
    assert [h["document"] for h in out["hits"]] == ["outage.md"]
    assert out["hits"][0]["kb"] == "docs"
    assert out["text"].startswith("[1] outage.md § Outage (docs, score ")
    with pytest.raises(EnclaveError, match="nowhere"):
        await run_step(ctx, "kb_search", kb="docs, nowhere", query="x")

    params = {"query": "invoice amount", "kb": "docs", "output_path": "/data/results.md"}
    steps = await run_steps(ctx, builtin()["search"], params)
    assert steps["write"]["path"] == "data/results.md"  # under the run's output folder
    report = (ctx.output_dir / "data" / "results.md").read_text()
    assert report.startswith("# invoice amount\n\n[1] ")
    assert "invoice.md" in report


async def test_log_digest_template(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    fake.configure(replies=[{"content": "- the database went down (app/web.log:3)"}])
    ctx = make_ctx(tmp_path, upstream, roots)
    steps = await run_steps(ctx, builtin()["log-digest"], {})
    prompt = fake.stats()["last_request"]["messages"][1]["content"]
    assert "## app/web.log\n1: boot\n2: INFO ready\n3: ERROR db down" in prompt
    assert "worker.log" not in prompt
    path = ctx.output_dir / steps["report"]["path"]
    assert path.name.startswith("log-digest-20")
    assert ctx.outputs == [path.resolve()]
    assert path.read_text().endswith(
        "- the database went down (app/web.log:3)\n\n## Files with errors\n\n"
        "- `app/web.log`: 5 lines\n"
    )


async def test_kb_classify_template(
    fake: FakeUpstream, upstream: str, tmp_path: Path, roots: dict[str, Path]
) -> None:
    definition = builtin()["kb-classify"]
    answer = {"invoice.md": "billing", "outage.md": "incidents"}
    fake.configure(replies=[{"content": json.dumps(answer)}])
    ctx = make_ctx(tmp_path, upstream, roots)
    params = {"categories": ["billing", "incidents"], "excerpt_chars": 20}
    steps = await run_steps(ctx, definition, params)
    assert steps["report"]["path"] == "classification.md"
    prompt = fake.stats()["last_request"]["messages"][1]["content"]
    assert "categories: billing, incidents." in prompt
    assert "## invoice.md\n# Invoice 17\n\nAmount\n\n## outage.md" in prompt
    assert "400 EUR" not in prompt  # cut at excerpt_chars
    assert json.loads((ctx.output_dir / "classification.json").read_text()) == answer
    assert (
        (ctx.output_dir / "classification.md")
        .read_text()
        .endswith("| invoice.md | billing |\n| outage.md | incidents |\n")
    )
