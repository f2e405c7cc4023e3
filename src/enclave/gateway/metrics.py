"""``GET /metrics``: Prometheus text format (prometheus-client), one registry per app.

Per call: requests by route, model, member and status; time to first token, latency and
queue wait; tokens in and out; speculative decoding's drafted and accepted tokens (and the
acceptance ratio per request); retries; calls a fallback pool answered. At scrape time,
from the current router: each member's health, breaker state and calls in flight, and
each pool's queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from enclave.router import CallRecord, Router

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health",
     "/metrics"}
)  # fmt: skip
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600,
)  # fmt: skip
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
BREAKER_STATES = ("closed", "half_open", "open")


class Metrics:
    def __init__(self, router: Callable[[], Router]) -> None:
        self.registry = CollectorRegistry()
        labels = ["route", "model", "member", "status"]
        self.requests = Counter(
            "enclave_requests", "Requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "enclave_request_duration_seconds", "From request to the last byte",
            ["route", "model", "member"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "enclave_time_to_first_token_seconds", "From request to the first streamed event",
            ["model", "member"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue = Histogram(
            "enclave_queue_wait_seconds", "Time waiting for a free pool member",
            ["model"], buckets=QUEUE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.tokens = Counter(
            "enclave_tokens", "Tokens from the upstreams' usage reports",
            ["model", "member", "direction"], registry=self.registry,
        )  # fmt: skip
        self.drafted = Counter(
            "enclave_speculative_draft_tokens", "Tokens drafted by speculative decoding "
            "(llama.cpp's timings.draft_n)", ["model", "member"], registry=self.registry,
        )  # fmt: skip
        self.accepted = Counter(
            "enclave_speculative_accepted_tokens", "Drafted tokens the model accepted "
            "(timings.draft_n_accepted)", ["model", "member"], registry=self.registry,
        )  # fmt: skip
        self.acceptance = Histogram(
            "enclave_speculative_acceptance_ratio", "Per request: accepted / drafted tokens",
            ["model"], buckets=RATIO_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "enclave_retries", "Calls sent again to another member before the first byte",
            ["model"], registry=self.registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "enclave_fallback", "Calls answered by a fallback pool of the model asked for",
            ["model", "pool"], registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "enclave_requests_in_flight", "Requests being answered", ["route"],
            registry=self.registry,
        )  # fmt: skip
        self.reloads = Counter(
            "enclave_config_reloads", "Config reloads by result", ["result"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_Members(router))
        self.registry.register(_Embedders())

    def started(self, path: str) -> None:
        self.in_flight.labels(_route(path)).inc()

    def observe(self, path: str, record: CallRecord, status: int, seconds: float) -> None:
        route = _route(path)
        model, member = record.model or "", record.member or ""
        self.in_flight.labels(route).dec()
        self.requests.labels(route, model, member, str(status)).inc()
        self.latency.labels(route, model, member).observe(seconds)
        if not record.model:
            return
        if record.attempts:
            self.queue.labels(model).observe(record.queue_s)
        if record.retries:
            self.retries.labels(model).inc(record.retries)
        if record.fell_back and record.pool:
            self.fallbacks.labels(model, record.pool).inc()
        if record.ttft_s is not None and record.stream:
            self.ttft.labels(model, member).observe(record.ttft_s)
        if record.prompt_tokens:
            self.tokens.labels(model, member, "in").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels(model, member, "out").inc(record.completion_tokens)
        if record.draft_tokens:
            self._speculated(model, member, record.draft_tokens, record.draft_accepted or 0)

    def _speculated(self, model: str, member: str, drafted: int, accepted: int) -> None:
        self.drafted.labels(model, member).inc(drafted)
        self.accepted.labels(model, member).inc(accepted)
        self.acceptance.labels(model).observe(accepted / drafted)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route(path: str) -> str:
    return path if path in ROUTES else "other"


class _Members(Collector):
    """Member and pool state, read from whichever router is current at scrape time."""

    def __init__(self, router: Callable[[], Router]) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        router = self.router()
        healthy = GaugeMetricFamily(
            "enclave_upstream_healthy", "1 if the member can take requests", labels=["member"]
        )
        breaker = GaugeMetricFamily(
            "enclave_upstream_breaker_state", "1 for the breaker's current state",
            labels=["member", "state"],
        )  # fmt: skip
        outstanding = GaugeMetricFamily(
            "enclave_upstream_in_flight", "Calls the member is answering", labels=["member"]
        )
        for member in router.members.values():
            healthy.add_metric([member.name], 1.0 if member.usable() else 0.0)
            current = member.breaker.current()
            for state in BREAKER_STATES:
                breaker.add_metric([member.name, state], 1.0 if state == current else 0.0)
            outstanding.add_metric([member.name], member.outstanding)
        queued = GaugeMetricFamily(
            "enclave_pool_queued", "Requests waiting for a member", labels=["model", "kind"]
        )
        available = GaugeMetricFamily(
            "enclave_pool_available_members", "Members able to serve", labels=["model", "kind"]
        )
        for pool in router.pools.values():
            queued.add_metric([pool.public, pool.kind], len(pool.waiters))
            available.add_metric([pool.public, pool.kind], pool.available())
        yield from (healthy, breaker, outstanding, queued, available)


class _Embedders(Collector):
    """The bundled embedders' work: texts encoded, and texts waiting or being encoded."""

    def collect(self) -> Iterator[Metric]:
        from enclave.engine.embedder import loaded

        encoded = CounterMetricFamily(
            "enclave_embedder_texts_encoded", "Texts the bundled embedder encoded",
            labels=["model"],
        )  # fmt: skip
        queued = GaugeMetricFamily(
            "enclave_embedder_queued_texts", "Texts waiting for or in the bundled embedder",
            labels=["model"],
        )  # fmt: skip
        for name, embedder in loaded().items():
            encoded.add_metric([name], embedder.queue.texts_encoded)
            queued.add_metric([name], embedder.queue.pending())
        yield encoded
        yield queued
