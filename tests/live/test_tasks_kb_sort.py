"""``kb-classify`` with ``ingest: true``: each document filed into the knowledge base its
category names (``kb_ingest``'s ``sort``), the model's classification scripted by the fake
upstream (which also embeds), the knowledge bases real on SQLite. A path out of the root,
a missing file and a category with no knowledge base each fail alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from enclave.config import KnowledgeSettings
from enclave.errors import Forbidden, InvalidRequest
from enclave.knowledge.service import KnowledgeBases
from enclave.store.repos import UserRepo, open_store
from enclave.taskconfig import TasksSettings
from enclave.tasks.templates import builtin
from tests.fakes.procs import FakeUpstream
from tests.taskctx import RecordingContext, run_step, run_steps

pytestmark = [pytest.mark.anyio, pytest.mark.fake_upstream(models=("default",))]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "invoice.md").write_text("# Invoice 17\n\nAmount due: 400 EUR by March.\n")
    (folder / "outage.md").write_text("# Outage\n\nThe database was down for an hour.\n")
    (folder / "memo.md").write_text("# Memo\n\nLunch moves to noon.\n")
    (tmp_path / "secret.md").write_text("# Secret\n")
    return folder


@pytest.fixture
async def ctx(upstream: str, tmp_path: Path, docs: Path) -> AsyncIterator[RecordingContext]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}")
    try:
        kbs = KnowledgeBases(store, KnowledgeSettings())
        for name in ("billing", "incidents"):
            await kbs.create(name, embedder=upstream, model="default")
        await UserRepo(store).add("alice", "admin")
        await UserRepo(store).add("bob", "user")
        settings = TasksSettings(file_roots={"docs": docs})
        yield RecordingContext(tmp_path / "home", settings, upstream, kbs)
    finally:
        await store.aclose()


async def documents(kbs: KnowledgeBases, name: str) -> list[str]:
    return sorted(Path(d.source).name for d in await kbs.documents(name))


async def test_kb_classify_files_each_document_into_its_category(
    fake: FakeUpstream, ctx: RecordingContext
) -> None:
    answer = {"invoice.md": "billing", "outage.md": "incidents", "memo.md": "lunch"}
    fake.configure(replies=[{"content": json.dumps(answer)}])
    params = {"categories": ["billing", "incidents", "lunch"], "ingest": True}
    steps = await run_steps(ctx, builtin()["kb-classify"], params)
    out = steps["file"]
    assert out["documents"] == 2
    assert out["sorted"] == {"billing": ["invoice.md"], "incidents": ["outage.md"]}
    assert out["errors"] == {"memo.md": "memo.md: there is no knowledge base 'lunch'"}
    assert ctx.kbs is not None
    assert await documents(ctx.kbs, "billing") == ["invoice.md"]
    assert await documents(ctx.kbs, "incidents") == ["outage.md"]
    assert [e["file"] for e in ctx.of("log")] == ["memo.md"]


async def test_without_ingest_nothing_is_filed(fake: FakeUpstream, ctx: RecordingContext) -> None:
    fake.configure(replies=[{"content": json.dumps({"invoice.md": "billing"})}])
    ctx.owner = "bob"  # no administrator needed when nothing is filed
    steps = await run_steps(ctx, builtin()["kb-classify"], {"categories": ["billing"]})
    assert steps["file"]["documents"] == 0
    assert ctx.kbs is not None
    assert await documents(ctx.kbs, "billing") == []


async def test_sort_refuses_paths_out_of_the_root_and_fails_when_every_file_does(
    ctx: RecordingContext,
) -> None:
    bad = {"../secret.md": "billing", "/etc/passwd": "billing", "gone.md": "billing"}
    with pytest.raises(InvalidRequest, match="none of the 3 files") as caught:
        await run_step(ctx, "kb_ingest", root="docs", sort=bad)
    assert "'..'" in caught.value.message
    assert "no such file" in caught.value.message
    with pytest.raises(InvalidRequest, match="sort goes with root"):
        await run_step(ctx, "kb_ingest", kb="billing", root="docs", sort={"memo.md": "billing"})
    ctx.owner = "bob"
    with pytest.raises(Forbidden, match="administrators"):
        await run_step(ctx, "kb_ingest", root="docs", sort={"memo.md": "billing"})
