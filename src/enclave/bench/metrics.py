"""What a load test measured, as pure functions over per-request samples.

Definitions follow vLLM's ``benchmark_serving`` (``vllm bench serve``) so that numbers
compare, with one deliberate difference noted:

- **TTFT**: request sent → first chunk whose delta has non-empty ``content`` (or
  ``reasoning_content``). vLLM's chat client takes the first chunk with any choice, which
  is the role-only chunk on servers that send it before the first token.
- **ITL**: the gaps between successive content chunks, pooled over all requests.
- **TPOT**: per request ``(e2e - TTFT) / (output_tokens - 1)``, for requests with more
  than one output token.
- **E2E**: request sent → the end of the response.
- **output tokens**: the server's ``usage.completion_tokens`` (requested with
  ``stream_options.include_usage``); when the server sends no usage, the number of content
  chunks stands in and ``usage_missing`` counts those requests.
- **goodput**: requests per second that succeeded *and* met every SLO given.
- percentiles interpolate linearly between closest ranks (numpy's default).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from enclave.errors import InvalidRequest

PERCENTILES = (50, 90, 95, 99)
SLO_NAMES = ("ttft", "tpot", "e2el")


@dataclass(slots=True)
class Sample:
    """One measured request; times in seconds (``time.perf_counter``)."""

    sent: float = 0.0  # absolute perf_counter when the request was written
    start: float = 0.0  # seconds from the start of its level
    e2e: float = 0.0
    ttft: float | None = None
    itl: array[float] = field(default_factory=lambda: array("d"))
    prompt_tokens: int | None = None
    output_tokens: int | None = None  # from usage; None when the server sent none
    chunks: int = 0  # content chunks
    status: int = 0
    error: str | None = None  # the error's type (``http_503``, ``timeout``...), None if ok
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def end(self) -> float:
        return self.start + self.e2e

    @property
    def tokens_out(self) -> int:
        """Output tokens: usage's, else the content chunks."""
        return self.output_tokens if self.output_tokens is not None else self.chunks

    @property
    def tpot(self) -> float | None:
        out = self.tokens_out
        if self.ttft is None or out < 2:
            return None
        return (self.e2e - self.ttft) / (out - 1)


@dataclass(frozen=True)
class Stats:
    """Summary of one metric, in the unit it was given (ms in reports)."""

    count: int
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    std: float

    def as_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; None = not checked."""

    ttft: float | None = None
    tpot: float | None = None
    e2el: float | None = None

    @property
    def empty(self) -> bool:
        return self.ttft is None and self.tpot is None and self.e2el is None

    def met(self, sample: Sample) -> bool:
        if not sample.ok:
            return False
        checks = ((self.ttft, sample.ttft), (self.tpot, sample.tpot), (self.e2el, sample.e2e))
        return all(limit is None or (value or 0.0) * 1000 <= limit for limit, value in checks)

    def as_json(self) -> dict[str, float | None]:
        return asdict(self)


def parse_slo(items: Sequence[str]) -> Slo:
    """vLLM's ``--goodput`` syntax: ``ttft:500 tpot:50 e2el:2000`` (milliseconds)."""
    values: dict[str, float] = {}
    for item in items:
        for part in item.replace(",", " ").split():
            name, sep, raw = part.partition(":")
            if not sep or name not in SLO_NAMES:
                raise InvalidRequest(f"bad SLO {part!r}: use ttft:MS, tpot:MS or e2el:MS")
            try:
                value = float(raw)
            except ValueError:
                raise InvalidRequest(f"bad SLO {part!r}: {raw!r} is not a number") from None
            if not value > 0:
                raise InvalidRequest(f"bad SLO {part!r}: the limit must be positive")
            values[name] = value
    return Slo(**values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    return _sorted_percentile(sorted(values), q)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def describe(values: Iterable[float], scale: float = 1.0) -> Stats | None:
    """Count, mean, median, p90, p95, p99, min, max and (population) std; None if empty."""
    ordered = sorted(v * scale for v in values)
    if not ordered:
        return None
    n = len(ordered)
    mean = math.fsum(ordered) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / n)
    p50, p90, p95, p99 = (_sorted_percentile(ordered, q) for q in PERCENTILES)
    return Stats(n, mean, p50, p90, p95, p99, ordered[0], ordered[-1], std)


def error_counts(samples: Iterable[Sample]) -> dict[str, int]:
    counts = Counter(s.error for s in samples if s.error is not None)
    return dict(sorted(counts.items()))


def goodput(samples: Sequence[Sample], slo: Slo, duration_s: float) -> float | None:
    """Requests per second that succeeded and met every SLO; None without SLOs."""
    if slo.empty or duration_s <= 0:
        return None
    return sum(1 for s in samples if slo.met(s)) / duration_s


@dataclass(frozen=True)
class Summary:
    """One load level, vLLM's numbers plus success rate and errors by type."""

    requests: int
    completed: int
    failed: int
    success_rate: float
    errors: dict[str, int]
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    total_input_tokens: int
    total_output_tokens: int
    usage_missing: int
    goodput: float | None
    ttft_ms: Stats | None
    tpot_ms: Stats | None
    itl_ms: Stats | None
    e2e_ms: Stats | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            stats = getattr(self, key)
            data[key] = stats.as_json() if stats is not None else None
        return data


def summarize(samples: Sequence[Sample], duration_s: float, slo: Slo | None = None) -> Summary:
    ok = [s for s in samples if s.ok]
    n_in = sum(s.prompt_tokens or 0 for s in ok)
    n_out = sum(s.tokens_out for s in ok)
    per_s = 1 / duration_s if duration_s > 0 else 0.0
    itl = (gap for s in ok for gap in s.itl)
    return Summary(
        requests=len(samples),
        completed=len(ok),
        failed=len(samples) - len(ok),
        success_rate=len(ok) / len(samples) if samples else 0.0,
        errors=error_counts(samples),
        duration_s=duration_s,
        request_throughput=len(ok) * per_s,
        output_throughput=n_out * per_s,
        total_token_throughput=(n_in + n_out) * per_s,
        total_input_tokens=n_in,
        total_output_tokens=n_out,
        usage_missing=sum(1 for s in ok if s.output_tokens is None),
        goodput=goodput(samples, slo or Slo(), duration_s),
        ttft_ms=describe((s.ttft for s in ok if s.ttft is not None), 1000),
        tpot_ms=describe((t for s in ok if (t := s.tpot) is not None), 1000),
        itl_ms=describe(itl, 1000),
        e2e_ms=describe((s.e2e for s in ok), 1000),
    )


@dataclass
class Window:
    """One interval of the time series: the requests that *ended* in it."""

    start_s: float
    end_s: float
    requests: int
    errors: int
    success_rate: float | None
    request_throughput: float
    output_throughput: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    server_rss_mb: float | None = None
    server_cpu_percent: float | None = None
    gpu_memory_mb: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _window(start: float, end: float, samples: Sequence[Sample]) -> Window:
    ok = [s for s in samples if s.ok]
    span = end - start
    ttfts = [s.ttft * 1000 for s in ok if s.ttft is not None]
    e2es = [s.e2e * 1000 for s in ok]

    def pct(values: list[float], q: float) -> float | None:
        return percentile(values, q) if values else None

    return Window(
        start_s=start,
        end_s=end,
        requests=len(samples),
        errors=len(samples) - len(ok),
        success_rate=len(ok) / len(samples) if samples else None,
        request_throughput=len(ok) / span if span > 0 else 0.0,
        output_throughput=sum(s.tokens_out for s in ok) / span if span > 0 else 0.0,
        ttft_p50_ms=pct(ttfts, 50),
        ttft_p95_ms=pct(ttfts, 95),
        e2e_p50_ms=pct(e2es, 50),
        e2e_p95_ms=pct(e2es, 95),
    )


def timeseries(samples: Sequence[Sample], interval_s: float, duration_s: float) -> list[Window]:
    """Windows of ``interval_s`` over ``[0, duration_s]``, by the time each request ended."""
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    count = max(1, math.ceil(duration_s / interval_s - 1e-9))
    buckets: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        buckets[min(max(int(sample.end // interval_s), 0), count - 1)].append(sample)
    windows = []
    for index, bucket in enumerate(buckets):
        start = index * interval_s
        end = min(start + interval_s, max(duration_s, start + 1e-9))
        windows.append(_window(start, end, bucket))
    return windows


@dataclass(frozen=True)
class SystemSample:
    """The server's resources at ``t`` seconds from the start of a level."""

    t: float
    rss_mb: float | None = None
    cpu_percent: float | None = None
    gpu_memory_mb: float | None = None

    def as_json(self) -> dict[str, float | None]:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def attach_system(windows: list[Window], system: Sequence[SystemSample]) -> None:
    """Fill each window's server columns with the mean of the samples taken in it."""
    for window in windows:
        inside = [s for s in system if window.start_s <= s.t < window.end_s]
        window.server_rss_mb = _mean([s.rss_mb for s in inside if s.rss_mb is not None])
        window.server_cpu_percent = _mean(
            [s.cpu_percent for s in inside if s.cpu_percent is not None]
        )
        window.gpu_memory_mb = _mean(
            [s.gpu_memory_mb for s in inside if s.gpu_memory_mb is not None]
        )


@dataclass(frozen=True)
class Drift:
    """How a long run changed from its first window to its last (soak)."""

    windows: int
    first_p95_ms: float | None
    last_p95_ms: float | None
    worst_p95_ms: float | None
    p95_change: float | None  # last / first - 1
    worst_success_rate: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def drift(windows: Sequence[Window]) -> Drift:
    busy = [w for w in windows if w.requests]
    p95s = [w.e2e_p95_ms for w in busy if w.e2e_p95_ms is not None]
    rates = [w.success_rate for w in busy if w.success_rate is not None]
    first, last = (p95s[0], p95s[-1]) if p95s else (None, None)
    change = last / first - 1 if first and last is not None else None
    return Drift(
        windows=len(busy),
        first_p95_ms=first,
        last_p95_ms=last,
        worst_p95_ms=max(p95s) if p95s else None,
        p95_change=change,
        worst_success_rate=min(rates) if rates else None,
    )
