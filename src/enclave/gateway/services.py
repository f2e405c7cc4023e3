"""What the routes use, built from the settings: the router, the engine, OCR, metrics.

``router`` is swapped whole on a config reload; a request reads it once and keeps that
snapshot, so a reload never changes the pools under a request in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.config import Settings
from enclave.router import Member, Router, build_router, retired
from enclave.upstream import HTTPUpstream

if TYPE_CHECKING:
    from enclave.assistants.service import Assistants
    from enclave.audit.witness import Witness
    from enclave.audit.writer import AuditWriter
    from enclave.auth.ldap import Directory
    from enclave.auth.ratelimit import Limiter
    from enclave.engine.local_embeddings import LocalEmbeddingsUpstream
    from enclave.engine.ocr import OCR
    from enclave.engine.runtime import Engine
    from enclave.gateway.gatekeeper import Gatekeeper
    from enclave.identity import Identity
    from enclave.knowledge.service import KnowledgeBases
    from enclave.knowledge.spool import Spool
    from enclave.memory.service import MemoryService
    from enclave.store.repos import Store
    from enclave.tasks.service import TaskService

log = logging.getLogger("enclave.gateway")

DRAIN_POLL_S = 0.5


@dataclass
class Services:
    settings: Settings
    router: Router
    engine: Engine | None = None
    embedder: LocalEmbeddingsUpstream | None = None
    ocr: OCR | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # identity and audit, opened by start()
    store: Store = field(init=False)
    secret: bytes = field(init=False)
    audit: AuditWriter | None = field(init=False, default=None)
    identity: Identity = field(init=False)
    gatekeeper: Gatekeeper = field(init=False)
    limiter: Limiter = field(init=False)
    assistants: Assistants = field(init=False)
    # the assistants' parts, opened on first use (memory loads the embedder)
    _memory: MemoryService | None = field(init=False, default=None)
    _memory_lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _knowledge: KnowledgeBases | None = field(init=False, default=None)
    _directory: Directory | None = field(init=False, default=None)
    # agent tasks (tasks.enabled): the worker, scheduler and reaper of this process
    tasks: TaskService | None = field(init=False, default=None)

    async def start(self) -> None:
        await self._open_identity()
        if self.engine:
            self.engine.start()
        if self.embedder:
            self.spawn(self.embedder.warm_up())
        self.spawn(self._health_checks())
        self.spawn(self.gatekeeper.run())
        self.spawn(self._archive_memories())
        await self._open_tasks()

    async def _open_tasks(self) -> None:
        if not self.settings.tasks.enabled:
            return
        from enclave.tasks.service import TaskService

        self.tasks = TaskService(
            self.store, lambda: self.settings, chat=self.chat_body, knowledge=self.knowledge,
            audit=self.audit, home=self.settings.home,
        )  # fmt: skip
        await self.tasks.start()

    async def _open_identity(self) -> None:
        from enclave.audit.witness import open_witness
        from enclave.audit.writer import AuditWriter
        from enclave.gateway.gatekeeper import Gatekeeper
        from enclave.identity import Identity
        from enclave.secretkey import load_or_create
        from enclave.store.repos import open_store

        settings = self.settings
        self.store = await open_store(settings.database)
        self.secret = load_or_create(settings.secret_file)
        if settings.audit.enabled:
            witness = open_witness(settings, self.secret)
            self.audit = AuditWriter(
                self.store.sessions, self.secret, strict=settings.audit.strict, witness=witness
            )
            self.audit.start()
            self.spawn(self.audit.witness_head())
            self.spawn(self._retain_audit(witness))
        self.identity = Identity(self.store, self.audit)
        self.gatekeeper = Gatekeeper(settings, self.store, self.secret)
        self.limiter = _limiter(settings)
        self.assistants = self._open_assistants()

    async def _retain_audit(self, witness: Witness | None) -> None:
        """``audit.retention_days``, read anew every hour: a reload applies it."""
        from enclave.audit.ops import retain

        await retain(
            self.store.sessions, self.secret, lambda: self.settings.audit.retention_days,
            witness=witness,
        )  # fmt: skip

    def _open_assistants(self) -> Assistants:
        from enclave.assistants.conversations import Conversations, ProfileRows
        from enclave.assistants.service import Assistants

        return Assistants(
            lambda: self.settings.assistants, ProfileRows(self.store), Conversations(self.store),
            knowledge=self.knowledge, memory=self.memory, chat=self.chat_text, spawn=self.spawn,
        )  # fmt: skip

    async def memory(self) -> MemoryService:
        """The memory service of this process, opened on first use."""
        async with self._memory_lock:
            if self._memory is None:
                from enclave.memory.service import MemoryService

                settings = self.settings
                self._memory = await MemoryService.open(
                    self.store, _embedder(), settings.memory, settings.home, self.audit
                )
            return self._memory

    def knowledge(self) -> KnowledgeBases:
        """The knowledge bases of this process, made on first use."""
        if self._knowledge is None:
            from enclave.knowledge.service import KnowledgeBases

            self._knowledge = KnowledgeBases(
                self.store, self.settings.knowledge, audit=self.audit, spool=self.spool()
            )
        return self._knowledge

    def spool(self) -> Spool:
        """Where uploads wait for their kb-ingest run (``knowledge.ingest.spool_dir``)."""
        from enclave.knowledge.spool import Spool

        ingest = self.settings.knowledge.ingest
        folder = ingest.spool_dir or self.settings.home / "kb-spool"
        keep_s = self.settings.tasks.keep_days * 86400.0
        return Spool(folder, max_files=ingest.max_jobs, keep_s=keep_s)

    async def chat_text(self, model: str, messages: list[dict[str, str]]) -> str:
        """A call of the gateway's own (memory extraction): the answer's text."""
        from enclave.gateway.calls import complete
        from enclave.router import CallRecord

        router = self.router
        pool = router.resolve(model, "chat")
        body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": 1024}
        result, lease = await router.send(pool, body, complete("chat"), CallRecord(model=model))
        lease.done(True)
        choices = result.get("choices") or [{}]
        return str((choices[0].get("message") or {}).get("content") or "")

    async def chat_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion of the gateway's own (agent tasks): the whole
        body (tools included) through the router, the whole response back. Cancelling
        the caller drops the upstream call in flight."""
        from enclave.gateway.calls import complete
        from enclave.gateway.chat import toolcalls
        from enclave.router import CallRecord

        model = str(body.get("model") or "default")
        router = self.router
        pool = router.resolve(model, "chat")
        wire = {**body, "model": model, "stream": False}
        result, lease = await router.send(pool, wire, complete("chat"), CallRecord(model=model))
        lease.done(True)
        result["model"] = model
        if lease.member.options.tool_blocks and (names := toolcalls.offered(body)):
            toolcalls.fix_response(result, names)  # the engine's calls written as JSON
        return result

    def swap(self, settings: Settings) -> None:
        """Route new requests by ``settings``; old members close once their calls end.
        The address rules of ``auth`` apply at once (a bad one raises first)."""
        self.gatekeeper.configure(settings)
        old = self.router
        self.router = build_router(
            settings, engine=self.engine, embedder=self.embedder, previous=old
        )
        self.settings = settings
        for member in retired(old, self.router):
            self.spawn(_close_when_idle(member))

    def directory(self) -> Directory | None:
        """The company directory of ``auth.ldap`` (none when not set), made again when a
        reload changed its settings."""
        wanted = self.settings.auth.ldap
        if self._directory is not None and self._directory.settings != wanted:
            self._directory.aclose()
            self._directory = None
        if wanted is not None and self._directory is None:
            from enclave.auth.ldap import Directory

            self._directory = Directory(wanted)
        return self._directory

    async def aclose(self) -> None:
        if self.tasks is not None:
            await self.tasks.aclose()
        for task in self._tasks:
            task.cancel()
        if self._directory is not None:
            self._directory.aclose()
        if self.engine:
            await self.engine.stop()
        await self.gatekeeper.flush_touches()
        if self.audit:
            await self.audit.aclose()
        await self.store.aclose()
        for member in self.router.members.values():
            if member.options.probe and isinstance(member.upstream, HTTPUpstream):
                await member.upstream.aclose()  # remote ones; the engine closed its own

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _health_checks(self) -> None:
        """Active checks of whichever router is current, every ``health_interval_s``."""
        while True:
            try:
                await self.router.check_all()
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(self.settings.router.health_interval_s)

    async def _archive_memories(self) -> None:
        """The memory archive policy (``memory.archive_*_days``), every
        ``memory.archive_interval_s``; nothing to do when neither age is set."""
        from enclave.identity import CLI

        while True:
            await asyncio.sleep(self.settings.memory.archive_interval_s)
            policy = self.settings.memory
            if not (policy.archive_after_days or policy.archive_unused_days):
                continue
            try:
                moved = await (await self.memory()).archive_due(CLI)
            except Exception:
                log.exception("archiving memories failed")
                continue
            if moved:
                log.info("archived %d memories", moved)


async def _close_when_idle(member: Member) -> None:
    while member.outstanding:  # noqa: ASYNC110 (a count, checked twice a second)
        await asyncio.sleep(DRAIN_POLL_S)
    if isinstance(member.upstream, HTTPUpstream):
        await member.upstream.aclose()
    log.info("upstream %s removed", member.name)


def _embedder() -> Any:
    from enclave.errors import ServiceUnavailable

    try:
        from enclave.vectors.embedding import LocalEmbedder

        return LocalEmbedder()
    except ImportError as exc:
        needs = "memory needs the embedder: pip install 'enclave[engine]'"
        raise ServiceUnavailable(needs) from exc


def _limiter(settings: Settings) -> Limiter:
    if settings.auth.rate_limits == "redis":
        from enclave.auth.ratelimit import RedisLimiter

        return RedisLimiter(settings.auth.redis_url)
    from enclave.auth.ratelimit import MemoryLimiter

    return MemoryLimiter()


def build_services(
    settings: Settings, *, engine_model: Path | None = None, attach_engine: bool = False
) -> Services:
    """``attach_engine``: the engine child is another process's (``serve --workers``)."""
    engine, embedder, ocr = _embedded(settings, engine_model, attach_engine)
    router = build_router(settings, engine=engine, embedder=embedder)
    return Services(settings, router, engine, embedder, ocr)


def _embedded(
    settings: Settings, engine_model: Path | None, attach: bool = False
) -> tuple[Engine | None, LocalEmbeddingsUpstream | None, OCR | None]:
    """The engine's parts, each on its own switch; they need ``enclave[engine]``."""
    cfg = settings.engine
    engine = embedder = ocr = None
    if cfg.enabled and engine_model is not None:
        from enclave.engine.runtime import Engine
        from enclave.engine.speculative import draft_model

        log_path = settings.logs_dir / "engine.log"
        draft = None if attach else draft_model(settings)
        engine = Engine(cfg, engine_model, log_path=log_path, attach=attach, draft=draft)
    if cfg.embeddings:
        from enclave.engine.embedder import shared
        from enclave.engine.local_embeddings import LocalEmbeddingsUpstream

        embedder = LocalEmbeddingsUpstream(shared(cfg.embedding_model_name))
    if cfg.ocr:
        from enclave.engine.ocr import OCR

        ocr = OCR()
    return engine, embedder, ocr
