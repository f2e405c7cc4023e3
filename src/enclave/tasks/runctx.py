"""The :class:`~enclave.tasks.context.RunContext` a run's steps see: events recorded in
order (guarded by the worker's lease), model calls counted against the token budget."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import Forbidden, TooManyRequests
from enclave.tasks.bus import LocalBus
from enclave.tasks.clock import Clock
from enclave.tasks.repo import EventSpec, TaskRepo

if TYPE_CHECKING:
    from enclave.knowledge.service import KnowledgeBases
    from enclave.taskconfig import TaskLimits, TasksSettings

Chat = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
KEEP_ALWAYS = ("status", "result", "error", "step")


# What the submitter's request adds to a run's definition snapshot (not the definition):
# the KB upload's files, and the models the submitting key and user may use.
SUBMITTED = ("files_hint", "models_allowed")


class LeaseLost(Exception):
    """This worker no longer holds the run: stop without writing anything more."""


@dataclass
class RunCtx:
    """One attempt of one run."""

    run_id: str
    task: str
    owner: str | None
    attempt: int
    params: dict[str, Any]
    settings: TasksSettings
    limits: TaskLimits
    repo: TaskRepo
    bus: LocalBus
    clock: Clock
    worker: str
    outputs_root: Path
    chat_call: Chat
    knowledge_of: Callable[[], KnowledgeBases]
    on_event: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    files_hint: Any = None  # what the submitter passed as files_hint (KB uploads)
    models_allowed: dict[str, list[str]] | None = None  # {"key", "user"}: patterns, [] = all
    step: str = ""  # the id of the step running now (workflow.run_steps sets it)
    files: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    events: int = 0
    pending: list[tuple[list[EventSpec], dict[str, Any]]] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        folder = self.outputs_root / self.run_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    async def progress(self, percent: float | None = None, message: str | None = None) -> None:
        data: dict[str, Any] = {}
        values: dict[str, Any] = {}
        if percent is not None:
            data["percent"] = values["progress_percent"] = max(0.0, min(100.0, float(percent)))
        if message is not None:
            data["message"] = values["progress_message"] = message[:1000]
        await self.record([("progress", data)], values)

    async def log(self, message: str, level: str = "info") -> None:
        await self.record([("log", {"level": level, "message": message})])

    async def emit(self, type: str, **data: Any) -> None:
        await self.record([(type, data)])

    def defer(self, events: list[EventSpec], values: dict[str, Any]) -> None:
        """Write ``events`` with the next ones (the last step's ``done``, written with the
        run's result in one transaction)."""
        self.pending.append((events, values))

    async def record(self, events: list[EventSpec], values: dict[str, Any] | None = None) -> None:
        """Write ``events`` (cut to ``limits.max_event_bytes``; past ``limits.max_events``
        only the run's own milestones are kept) and tell followers."""
        if self.pending:
            first, self.pending = self.pending, []
            events = [e for deferred, _ in first for e in deferred] + events
            values = {k: v for _, found in first for k, v in found.items()} | (values or {})
        cap = self.limits.max_events
        kept = [(t, fit(d, self.limits.max_event_bytes)) for t, d in events
                if t in KEEP_ALWAYS or self.events < cap]  # fmt: skip
        if not kept and not values:
            return
        values = {**(values or {}), "prompt_tokens": self.prompt_tokens,
                  "completion_tokens": self.completion_tokens}  # fmt: skip
        last = await self.repo.append(
            self.run_id, kept, self.clock.now(), values, worker=self.worker, prev=self.events
        )
        if last is None:
            raise LeaseLost(self.run_id)
        self.events = last
        await self.bus.notify(f"run:{self.run_id}", upto=last)
        if self.on_event is not None:
            for kind, data in kept:
                await self.on_event(kind, data)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in body.items() if k != "stream"}
        body.setdefault("model", "default")
        self._may_use(str(body["model"]))
        left = self.limits.max_tokens - self.prompt_tokens - self.completion_tokens
        if left <= 0:
            raise self._over_budget()
        # an answer asked for more than the run has left gets what is left (one given
        # no max_tokens is bounded by the model's context, and counted after)
        given = body.get("max_tokens")
        if isinstance(given, int) and given > left:
            body["max_tokens"] = left
        answer = await self.chat_call(body)
        usage = answer.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        if self.prompt_tokens + self.completion_tokens > self.limits.max_tokens:
            raise self._over_budget()
        return answer

    def _over_budget(self) -> TooManyRequests:
        used = self.prompt_tokens + self.completion_tokens
        return TooManyRequests(
            f"the run used {used} tokens, its budget is tasks.limits.max_tokens "
            f"({self.limits.max_tokens})", param="tasks.limits.max_tokens",
        )  # fmt: skip

    def _may_use(self, model: str) -> None:
        """The submitter's key and user must both allow ``model`` (as on /v1): 403."""
        from enclave.auth.apikeys import model_allowed

        allowed = self.models_allowed or {}
        for whose in ("key", "user"):
            if not model_allowed(tuple(allowed.get(whose) or ()), model):
                raise Forbidden(
                    f"the {whose} that started this run may not use the model {model}",
                    param="model",
                )  # fmt: skip

    def knowledge(self) -> KnowledgeBases:
        return self.knowledge_of()

    def add_output(self, path: Path) -> None:
        relative = path.resolve().relative_to(self.output_dir.resolve()).as_posix()
        size = path.stat().st_size if path.exists() else 0
        self.files = [f for f in self.files if f["path"] != relative]
        self.files.append({"path": relative, "bytes": size})


def fit(data: dict[str, Any], limit: int) -> dict[str, Any]:
    """``data`` whose JSON is at most ``limit`` bytes: long strings are cut."""
    size = len(json.dumps(data, default=str).encode())
    cut = limit
    while size > limit and cut > 16:
        cut //= 2
        data = _cut(data, cut)
        size = len(json.dumps(data, default=str).encode())
    return data if size <= limit else {"truncated": True}


def _cut(value: Any, cut: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= cut else value[:cut] + "…[cut]"
    if isinstance(value, list):
        return [_cut(item, cut) for item in value]
    if isinstance(value, dict):
        return {key: _cut(item, cut) for key, item in value.items()}
    return value
