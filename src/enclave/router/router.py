"""Public model names → pools of members; sending a call with retries before the first byte.

The router is rebuilt on a config reload (:func:`enclave.router.build.build_router`);
members whose connection settings did not change carry over, with their breakers and
in-flight counts, so a reload neither drops requests nor forgets an ejection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from enclave.config import RouterSettings
from enclave.errors import (
    CallerBackoff,
    EnclaveError,
    ModelNotFound,
    RetryLater,
    ServiceUnavailable,
    UpstreamStatusError,
)
from enclave.protocol import ModelCard
from enclave.router.member import Lease, Member
from enclave.router.pool import Kind, Pool
from enclave.router.record import CallRecord
from enclave.router.strikes import Strikes
from enclave.upstream.openai import HTTPUpstream

log = logging.getLogger("enclave.router")

T = TypeVar("T")

DEFAULT_ALIAS = "default"
RETRY_RESERVE = 10.0


@dataclass(eq=False)
class Spec:
    """A member and the models it serves: declared, or found in its ``/v1/models``."""

    member: Member
    chat: dict[str, str] = field(default_factory=dict)  # public name → upstream model id
    embeddings: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    discover: bool = False
    owned_by: str = "enclave"
    connection: tuple[object, ...] = ()  # what its client was built from (reload reuse)

    def chat_models(self) -> dict[str, str]:
        if not self.discover:
            return self.chat
        found: dict[str, str] = dict(self.chat)
        by_id = {upstream_id: public for public, upstream_id in self.aliases.items()}
        for upstream_id in self.member.discovered:
            found.setdefault(by_id.get(upstream_id, upstream_id), upstream_id)
        return found


class RetryBudget:
    """Retries may be at most ``ratio`` of requests, plus a reserve for bursts."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.tokens = RETRY_RESERVE

    def deposit(self) -> None:
        self.tokens = min(RETRY_RESERVE, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        if self.tokens < 1 - 1e-9:  # 5 x 0.2 is a whole retry despite floating point
            return False
        self.tokens -= 1
        return True


def verdict(exc: EnclaveError) -> tuple[bool, bool | None]:
    """(retry on another member?, how the member did: True ok / False its fault / None)."""
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return True, None  # busy, not broken
        return (True, False) if exc.status >= 500 else (False, True)
    if isinstance(exc, RetryLater):
        return True, None  # not ready (loading) between our check and the call
    if exc.status >= 500:
        return True, False  # cannot connect, broke off, timed out
    return False, True


class Router:
    def __init__(
        self, specs: Iterable[Spec], settings: RouterSettings, *, default_model: str | None
    ) -> None:
        self.specs = list(specs)
        self.settings = settings
        self.members = {spec.member.name: spec.member for spec in self.specs}
        self.rng = random.Random()  # noqa: S311 (spreading load, not secrets)
        self.budget = RetryBudget(settings.retry_budget)
        self.strikes = Strikes(
            settings.breaker_failures, settings.caller_backoff_s, settings.caller_backoff_max
        )
        self._default = default_model
        self.pools: dict[tuple[Kind, str], Pool] = {}
        self.default_model: str | None = None
        self.rebuild()

    # --- the model table -------------------------------------------------------------

    def rebuild(self) -> None:
        """(Re)make the pools from what members declare and what they were found to serve."""
        entries: dict[tuple[Kind, str], list[tuple[Member, str]]] = {}
        owners: dict[str, str] = {}
        for spec in self.specs:
            served: list[tuple[Kind, str, str]] = [
                *(("chat", p, u) for p, u in spec.chat_models().items()),
                *(("embeddings", p, u) for p, u in spec.embeddings.items()),
            ]
            spec.member.public = sorted({public for _, public, _ in served})
            for kind, public, upstream_id in served:
                entries.setdefault((kind, public), []).append((spec.member, upstream_id))
                owners.setdefault(public, spec.owned_by)
        old = self.pools
        self.pools = {
            key: old[key] if key in old and _same(old[key], found) else self._pool(key, found)
            for key, found in entries.items()
        }
        self.owners = owners
        chat = [name for kind, name in self.pools if kind == "chat"]
        self.default_model = self._default or (chat[0] if chat else None)

    def _pool(self, key: tuple[Kind, str], entries: list[tuple[Member, str]]) -> Pool:
        kind, public = key
        return Pool(
            public,
            kind,
            entries,
            queue_size=self.settings.queue_size,
            queue_timeout_s=self.settings.queue_timeout_s,
            rng=self.rng,
        )

    def resolve(
        self, model: str, kind: Kind, *, visible: Callable[[str], bool] = lambda name: True
    ) -> Pool:
        """The pool serving ``model``; :class:`ModelNotFound` lists only the models the
        caller may see (``visible``: its key's model scope, as ``/v1/models`` applies)."""
        name = self.default_model if model == DEFAULT_ALIAS and self.default_model else model
        pool = self.pools.get((kind, name))
        if pool is None:
            known = sorted(
                p.public for p in self.pools.values() if p.kind == kind and visible(p.public)
            )
            what = "chat model" if kind == "chat" else "embedding model"
            raise ModelNotFound(
                f"The model '{model}' does not exist as a {what} here; "
                f"available: {', '.join(known) or 'none'}",
                param="model",
            )
        return pool

    def context_length(self, model: str) -> int | None:
        """The context length of a chat model, when known (``None`` too if no such model)."""
        pool = self.pools.get(("chat", model))
        return pool.context_length() if pool is not None else None

    def cards(self) -> list[ModelCard]:
        cards: dict[str, ModelCard] = {}
        for pool in self.pools.values():
            cards.setdefault(
                pool.public,
                ModelCard(
                    id=pool.public,
                    owned_by=self.owners.get(pool.public, "enclave"),
                    max_model_len=pool.context_length(),
                ),
            )
        return list(cards.values())

    # --- sending ---------------------------------------------------------------------

    async def send(
        self,
        pool: Pool,
        body: dict[str, Any],
        call: Callable[[Lease, dict[str, Any]], Awaitable[T]],
        record: CallRecord,
        *,
        key: str | None = None,
        caller: str | None = None,
    ) -> tuple[T, Lease]:
        """Run ``call`` on a member; before it returns (no byte sent to the client yet) a
        connect error, timeout or 5xx is retried on another member, within the budget.

        ``caller`` (an API key prefix, user or client address) is who asked: a member
        that keeps failing only that caller's requests is kept for the others, and the
        caller waits (:class:`CallerBackoff`). The lease is the caller's to give back
        (``lease.done``)."""
        self.budget.deposit()
        chain = self.fallbacks(pool, vision=bool(record.images) and pool.vision)  # else OCR'd
        at, held = 0, self._held(pool, caller)
        tried: list[str] = []
        last: EnclaveError | None = None
        refused: ServiceUnavailable | None = None  # the asked pool's own "cannot serve"
        while True:
            current = chain[at]
            try:
                lease = await current.acquire([*held, *tried], key)
            except ServiceUnavailable as exc:  # none of its members can: the next pool may
                refused, at = refused or exc, at + 1
                if at < len(chain):
                    held = self._held(chain[at], caller, soft=True)
                    continue
                raise (last or refused) from None  # a member's error stands over "none left"
            except RetryLater:
                if last is not None:  # none left to try: the last member's error stands
                    raise last from None
                raise
            record.member, record.attempts = lease.member.name, record.attempts + 1
            record.pool, record.fell_back = current.public, at > 0
            record.queue_s += lease.queued_s
            try:
                result = await call(lease, {**body, "model": lease.upstream_model})
            except EnclaveError as exc:
                retry, ok = verdict(exc)
                self._failed(lease, ok, exc, caller)
                tried.append(lease.member.name)
                if not (retry and self._may_retry(chain[at:], tried, held)):
                    raise
                last = exc
                record.retries += 1
                log.warning("%s on %s; retrying on another member", exc.message, tried[-1])
            except BaseException:
                lease.done(None)
                raise
            else:
                if caller is not None:
                    self.strikes.succeeded(caller, lease.member.name)
                return result, lease

    def fallbacks(self, pool: Pool, *, vision: bool = False) -> list[Pool]:
        """``pool`` and, in ``router.fallbacks`` order (depth first, each pool once), the
        pools of its kind to try when none of its members can serve; a call with images
        skips those without vision. No loop: a pool already listed is not listed again."""
        chain = [pool]
        todo = list(reversed(self.settings.fallbacks.get(pool.public, [])))
        while todo:
            found = self.pools.get((pool.kind, name := todo.pop()))
            if found is None or found in chain or (vision and not found.vision):
                continue
            chain.append(found)
            todo += reversed(self.settings.fallbacks.get(name, []))
        return chain

    def _may_retry(self, chain: list[Pool], tried: list[str], held: list[str]) -> bool:
        return (
            len(tried) <= self.settings.retries
            and any(pool.others([*held, *tried]) for pool in chain)
            and self.budget.withdraw()
        )

    def _held(self, pool: Pool, caller: str | None, *, soft: bool = False) -> list[str]:
        """The members ``caller`` must keep away from for now; :class:`CallerBackoff`
        when that leaves none that could serve it (``soft``, a fallback pool: the
        members are just left out)."""
        if caller is None:
            return []
        waits = {m.name: self.strikes.wait(caller, m.name) for m in pool.members}
        held = [name for name, wait in waits.items() if wait > 0]
        if held and not soft and not pool.others(held):
            settings = self.settings
            raise CallerBackoff(
                f"your recent requests to {pool.public} kept making its upstream fail "
                f"(router.breaker_failures={settings.breaker_failures} in a row) while "
                f"other callers' succeed; you are slowed down for "
                f"router.caller_backoff_s={settings.caller_backoff_s:g} s (doubling on "
                "each further failure); other callers are not affected",
                retry_after=math.ceil(min(w for w in waits.values() if w > 0)),
            )
        return held

    def _failed(self, lease: Lease, ok: bool | None, exc: EnclaveError, caller: str | None) -> None:
        """Give the lease back after ``exc``; blame the caller when only its requests fail."""
        blame = caller if _answered(exc) else None
        counted = lease.done(ok, exc.message, caller=blame)
        if ok is not False or blame is None:
            return
        if counted:
            self.strikes.forget(lease.member.name)  # the member's fault, not the caller's
        else:
            self.strikes.failed(blame, lease.member.name)

    # --- health ----------------------------------------------------------------------

    async def check_all(self) -> None:
        """One round of active checks; pools are remade when discovered models change."""
        probed = [m for m in self.members.values() if m.options.probe]
        results = await asyncio.gather(*(self._check(m) for m in probed))
        if any(results):
            self.rebuild()

    async def _check(self, member: Member) -> bool:
        upstream = member.upstream
        if not isinstance(upstream, HTTPUpstream):
            return False
        try:
            cards = await upstream.probe(self.settings.health_timeout_s)
        except EnclaveError as exc:
            if member.healthy:
                log.warning("upstream %s failed its health check: %s", member.name, exc.message)
            member.checked(False, exc.message)
            return False
        if not member.healthy:
            log.info("upstream %s passed its health check again", member.name)
        member.checked(True)
        found = {str(card["id"]): card for card in cards if "id" in card}
        changed = set(found) != set(member.discovered)
        member.discovered = found
        return changed

    async def watch(self) -> None:
        """Active checks forever, every ``health_interval_s``."""
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(self.settings.health_interval_s)

    def health(self) -> dict[str, Any]:
        """``ok``: every pool can serve; ``loading``: a pool waits for a member still
        starting (the engine loading its model); ``degraded``: some pools cannot serve;
        ``unavailable``: none can."""
        down = [pool for pool in self.pools.values() if not pool.available()]
        if not down:
            status = "ok" if self.pools else "unavailable"
        elif any(m.upstream.state().state != "ready" for pool in down for m in pool.members):
            status = "loading"
        else:
            status = "degraded" if len(down) < len(self.pools) else "unavailable"
        return {
            "status": status,
            "pools": [pool.view() for pool in self.pools.values()],
            "upstreams": [member.view() for member in self.members.values()],
        }


def _answered(exc: EnclaveError) -> bool:
    """The upstream answered the request with an error: that request may be the cause
    (a refused connection, a timeout or a broken stream says nothing about it)."""
    return isinstance(exc, UpstreamStatusError) and exc.status >= 500


def _same(pool: Pool, entries: list[tuple[Member, str]]) -> bool:
    return [(m, pool.upstream_model[m.name]) for m in pool.members] == entries
