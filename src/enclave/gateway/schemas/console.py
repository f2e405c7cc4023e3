"""``/api/admin`` for the admin console: dashboard stats, upstreams, the audit log, the
effective configuration, and changing a key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from enclave.gateway.schemas import INT64_MAX


class StatsPoint(BaseModel):
    """One bucket, one group or the whole window. Percentiles are in ms (``null``: no
    call had one); they come from the newest records only when ``truncated``."""

    requests: int
    errors: int = Field(description="calls answered with a status of 400 or more")
    errors_5xx: int = Field(description="calls answered with a status of 500 or more")
    tokens_in: int
    tokens_out: int
    p50_ms: int | None
    p95_ms: int | None
    p99_ms: int | None
    ttft_p50_ms: int | None = Field(description="time to the first streamed token")
    ttft_p95_ms: int | None


class StatsBucket(StatsPoint):
    t: str = Field(description="the bucket's start, ISO 8601 UTC")


class StatsGroup(StatsPoint):
    name: str | None = Field(description="the model, user or key prefix (null: none)")


class StatsPublic(BaseModel):
    window_s: int
    bucket_s: int
    by: str
    series: list[StatsBucket]
    groups: list[StatsGroup] = Field(description="the busiest first")
    totals: StatsPoint
    truncated: bool = Field(
        description="the window held more than audit.stats_max_rows API records: the "
        "percentiles cover the newest of them (counts and sums cover all)"
    )
    sampled: int = Field(description="records the percentiles were computed over")


class MemberPublic(BaseModel):
    name: str
    url: str = Field(description="its base URL, any credentials masked")
    healthy: bool = Field(description="the last active health check passed")
    state: str = Field(description="healthy, unhealthy, or the engine's: starting...")
    breaker: str = Field(description="closed, open or half_open")
    retry_in_s: float = Field(description="until an open breaker lets a trial through")
    in_flight: int
    max_concurrency: int = Field(description="0: no cap")
    queued: int = Field(description="requests waiting in the queues of its pools")
    restarts: int | None = Field(description="the engine child's restarts (null: remote)")
    served: int
    failures: int
    last_error: str
    weight: float
    models: list[str]
    standby: bool = Field(False, description="takes calls only while no primary member can")


class PoolPublic(BaseModel):
    name: str
    kind: str = Field(description="chat or embeddings")
    available: int = Field(description="members that can take a call now")
    in_flight: int = Field(description="calls of this pool on its members now")
    queued: int = Field(description="calls waiting for a member")
    queue_size: int
    members: list[MemberPublic]


class EnginePublic(BaseModel):
    state: str
    detail: str
    pid: int | None
    restarts: int
    model: str


class UpstreamsPublic(BaseModel):
    status: str = Field(description="as /health says: ok, loading, degraded, unavailable")
    pools: list[PoolPublic]
    engine: EnginePublic | None = Field(description="the embedded engine's supervisor")


class AuditSummary(BaseModel):
    seq: int
    ts: str
    kind: str
    action: str
    request_id: str | None
    user: str | None
    key_prefix: str | None
    client_ip: str | None
    model: str | None
    member: str | None
    status: int | None
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: int | None


class AuditPagePublic(BaseModel):
    data: list[AuditSummary]
    next_before: int | None = Field(description="pass as before= for the next (older) page")


class AuditRecordPublic(AuditSummary):
    images: list[str]
    content: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerify(BaseModel):
    witness: bool = Field(
        True, description="check against the witness too (false: the chain alone)"
    )


class AuditVerdict(BaseModel):
    ok: bool
    checked: int = Field(description="records whose hash and link were checked")
    first_bad_seq: int | None
    reason: str
    witness: str = Field(description="what the witness check found, or why it did not run")
    unanchored: bool = Field(description="not ok because the witness could not be checked")


class ConfigPublic(BaseModel):
    path: str | None = Field(description="the config file in use (null: none)")
    settings: dict[str, Any] = Field(description='the effective settings, secrets "***"')


class KeyUpdate(BaseModel):
    """Absent or ``null`` leaves a field as it is; ``0`` removes a limit; ``[]`` removes
    the model scope or the key's own allowlist."""

    name: str | None = Field(None, min_length=1, max_length=64)
    models: list[str] | None = None
    rpm: int | None = Field(None, ge=0, le=INT64_MAX)
    tpm: int | None = Field(None, ge=0, le=INT64_MAX)
    max_concurrency: int | None = Field(None, ge=0, le=INT64_MAX)
    allow: list[str] | None = None
