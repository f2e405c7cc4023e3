"""``/api/kb``: knowledge bases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from enclave.knowledge.report import IngestReport
    from enclave.knowledge.repository import DocInfo, KbInfo
    from enclave.knowledge.service import Hit


class KbCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    embedder: str | None = None
    model: str | None = None
    description: str = Field("", max_length=2000)
    chunk_size: int | None = Field(None, ge=100, le=20000)
    chunk_overlap: int | None = Field(None, ge=0)


class Search(BaseModel):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(5, ge=1, le=100)
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"


class KbPublic(BaseModel):
    name: str
    description: str
    embedder: str
    embedding_model: str
    dims: int
    chunk_size: int
    chunk_overlap: int
    documents: int
    chunks: int
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, kb: KbInfo) -> KbPublic:
        return cls(
            name=kb.name, description=kb.description, embedder=kb.embedder,
            embedding_model=kb.embedding_model, dims=kb.dims, chunk_size=kb.chunk_size,
            chunk_overlap=kb.chunk_overlap, documents=kb.documents, chunks=kb.chunks,
            created_at=kb.created_at.isoformat(), updated_at=kb.updated_at.isoformat(),
        )  # fmt: skip


class DocPublic(BaseModel):
    source: str
    name: str
    kind: str
    sha256: str
    size: int
    chunks: int
    added_at: str

    @classmethod
    def of(cls, doc: DocInfo) -> DocPublic:
        return cls(source=doc.source, name=doc.name, kind=doc.kind, sha256=doc.sha256,
                   size=doc.size, chunks=doc.chunks, added_at=doc.added_at.isoformat())  # fmt: skip


class KbDetail(KbPublic):
    """One knowledge base with its documents."""

    data: list[DocPublic]


class HitPublic(BaseModel):
    kb: str
    score: float
    document: str
    source: str
    heading: str
    text: str
    ord: int
    chunk_id: int
    vector_rank: int | None
    keyword_rank: int | None
    citation: str

    @classmethod
    def of(cls, hit: Hit) -> HitPublic:
        return cls(
            kb=hit.kb, score=hit.score, document=hit.document, source=hit.source,
            heading=hit.heading, text=hit.text, ord=hit.ord, chunk_id=hit.chunk_id,
            vector_rank=hit.vector_rank, keyword_rank=hit.keyword_rank, citation=hit.citation(),
        )  # fmt: skip


class HitList(BaseModel):
    object: Literal["list"] = "list"
    data: list[HitPublic]


class IngestPublic(BaseModel):
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    failed: dict[str, str]
    chunks: int
    seconds: float

    @classmethod
    def of(cls, report: IngestReport) -> IngestPublic:
        return cls(added=report.added, updated=report.updated, unchanged=report.unchanged,
                   removed=report.removed, failed=report.failed, chunks=report.chunks,
                   seconds=round(report.seconds, 3))  # fmt: skip


class IngestJobPublic(BaseModel):
    """An upload's ingestion job: a view of its ``kb-ingest`` run (``202`` from the upload;
    follow the run, or poll this until it has finished)."""

    id: str = Field(description="the run's id")
    object: Literal["kb.ingest_job"] = "kb.ingest_job"
    kb: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    files: list[str]
    files_total: int
    files_done: int
    chunks_done: int = Field(description="chunks stored (known once finished)")
    chunks_total: int = Field(description="chunks stored (known once finished)")
    errors: dict[str, str] = Field(description="file → why it was not ingested")
    error: str | None = Field(description="why the whole job failed")
    result: IngestPublic | None = Field(description="what changed, once finished")
    progress: dict[str, Any] = Field(description="the run's progress: {percent, message}")
    created_at: float
    finished_at: float | None
    run: dict[str, Any] = Field(description="the kb-ingest run (as GET /api/runs/{id})")


class IngestJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[IngestJobPublic]


class KbDeleted(BaseModel):
    name: str
    deleted: bool


class DocDeleted(BaseModel):
    name: str
    source: str
    deleted: bool
