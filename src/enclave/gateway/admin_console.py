"""``/api/admin`` for the admin console: dashboard stats, upstreams, the effective
configuration, and changing a key (the audit log's routes: :mod:`.admin_audit`).

Every route is for administrators (``access.admin`` on the router). Nothing here waits
for an upstream: ``/upstreams`` reads the router's state as it is in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request

from enclave.durations import parse_duration
from enclave.errors import InvalidRequest
from enclave.gateway import access
from enclave.gateway.access import actor
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.masking import mask_url, masked
from enclave.gateway.schemas.admin import KeyPublic
from enclave.gateway.schemas.console import (
    ConfigPublic,
    EnginePublic,
    KeyUpdate,
    MemberPublic,
    PoolPublic,
    StatsBucket,
    StatsGroup,
    StatsPoint,
    StatsPublic,
    UpstreamsPublic,
)
from enclave.identity import KeyChange

if TYPE_CHECKING:
    from enclave.gateway.services import Services
    from enclave.router import Member, Pool, Router

MAX_WINDOW_S = 366 * 86400
DEFAULT_BUCKETS = 100  # without bucket=: the smallest round step giving at most this many
STEPS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


def router(services: Services, config_path: Path | None) -> APIRouter:
    admin = APIRouter(prefix="/api/admin", dependencies=[access.ADMIN], responses=ERRORS)
    _stats_route(admin, services)

    @admin.get("/upstreams")
    async def upstreams() -> UpstreamsPublic:
        """Pools and members as the router holds them now; no upstream is asked."""
        return upstreams_of(services)

    @admin.get("/config")
    async def config() -> ConfigPublic:
        """The effective settings (file, environment, flags), every secret ``"***"``."""
        path = str(config_path) if config_path else None
        return ConfigPublic(path=path, settings=masked(services.settings))

    @admin.patch("/keys/{prefix}", openapi_extra=json_body(KeyUpdate))
    async def change_key(prefix: str, request: Request) -> KeyPublic:
        """Change a key's name, models, limits or allowlist; its secret stays. Applies at
        the key's next call (at once on this gateway; other replicas within 2 s)."""
        given = await body_of(request, KeyUpdate)
        key = await services.identity.set_key(actor(request), prefix, KeyChange(**dict(given)))
        services.gatekeeper.forget(prefix)
        return KeyPublic.of(key)

    return admin


# --- stats ------------------------------------------------------------------------------


def _stats_route(admin: APIRouter, services: Services) -> None:
    @admin.get("/stats")
    async def stats(
        window: str = "24h", bucket: str | None = None,
        by: Literal["model", "user", "key"] = "model",
    ) -> StatsPublic:  # fmt: skip
        """Requests, errors, tokens and latency percentiles over time and per model, user
        or key, from the audit log's API records. ``window`` and ``bucket``: ``90s``,
        ``15m``, ``24h``, ``7d``."""
        from enclave.audit.stats import Window
        from enclave.audit.stats import stats as compute

        audit = services.settings.audit
        window_s, bucket_s = _window(window, bucket, audit.stats_max_buckets)
        span = Window.ending(datetime.now(UTC), window_s, bucket_s)
        found = await compute(services.store.sessions, span, by, max_rows=audit.stats_max_rows)
        return StatsPublic(
            window_s=window_s, bucket_s=bucket_s, by=by,
            series=[StatsBucket(t=span.at(i), **t.summary()) for i, t in enumerate(found.series)],
            groups=[StatsGroup(name=k, **t.summary()) for k, t in found.groups.items()],
            totals=StatsPoint(**found.totals.summary()),
            truncated=found.truncated, sampled=found.sampled,
        )  # fmt: skip


def _seconds(text: str, param: str) -> int:
    try:
        value = parse_duration(text, units="smhd").total_seconds()
    except ValueError as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param) from None
    if value < 1 or value > MAX_WINDOW_S:
        raise InvalidRequest(f"{param} must be from 1s to 366d, not {text!r}", param=param)
    return int(value)


def _window(window: str, bucket: str | None, max_buckets: int) -> tuple[int, int]:
    """The window and bucket in seconds; at most ``max_buckets`` buckets."""
    window_s = _seconds(window, "window")
    if bucket is None:
        # + 1 as below: an unaligned window touches one bucket more
        most = min(DEFAULT_BUCKETS, max_buckets)
        fits = [s for s in STEPS_S if -(-window_s // s) + 1 <= most]
        bucket_s = fits[0] if fits else -(-window_s // max(max_buckets - 1, 1))
    else:
        bucket_s = _seconds(bucket, "bucket")
    if bucket_s > window_s:
        raise InvalidRequest(f"bucket {bucket!r} is longer than window {window!r}", param="bucket")
    if -(-window_s // bucket_s) + 1 > max_buckets:  # + 1: the window rarely starts aligned
        raise InvalidRequest(
            f"window {window!r} / bucket {bucket!r} makes more than {max_buckets} buckets "
            f"(audit.stats_max_buckets): choose a longer bucket",
            param="bucket",
        )
    return window_s, bucket_s


# --- upstreams --------------------------------------------------------------------------


def upstreams_of(services: Services) -> UpstreamsPublic:
    """The router's pools and members as they are now (no I/O)."""
    router = services.router
    status = router.health()["status"]
    pools = [_pool(p, router) for p in router.pools.values()]
    engine = services.engine
    state = None
    if engine is not None:
        now = engine.supervisor.state()
        state = EnginePublic(
            state=now.state, detail=now.detail, pid=engine.supervisor.pid,
            restarts=engine.supervisor.restarts, model=engine.model.name,
        )  # fmt: skip
    return UpstreamsPublic(status=status, pools=pools, engine=state)


def _pool(pool: Pool, router: Router) -> PoolPublic:
    return PoolPublic(
        name=pool.public, kind=pool.kind, available=pool.available(),
        in_flight=pool.in_flight, queued=len(pool.waiters), queue_size=pool.queue_size,
        members=[_member(m, router) for m in pool.members],
    )  # fmt: skip


def _masked_error(member: Member) -> str | None:
    """The member's last error, its URL's credentials masked (client errors quote it)."""
    error = member.last_error
    url = member.options.base_url
    return error.replace(url, mask_url(url)) if error else error


def _member(member: Member, router: Router) -> MemberPublic:
    info: dict[str, Any] = member.upstream.state().info
    restarts = info.get("restarts")
    waiting = sum(len(p.waiters) for p in router.pools.values() if member in p.members)
    return MemberPublic(
        name=member.name, url=mask_url(member.options.base_url), healthy=member.healthy,
        state=member.state_name(), breaker=member.breaker.current(),
        retry_in_s=round(member.breaker.retry_in(), 3), in_flight=member.outstanding,
        max_concurrency=member.options.max_concurrency, queued=waiting,
        restarts=restarts if isinstance(restarts, int) else None, served=member.served,
        failures=member.failures, last_error=_masked_error(member), weight=member.weight,
        models=list(member.public), standby=member.options.standby,
    )  # fmt: skip
