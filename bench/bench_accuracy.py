"""How exact and how cheap ``enclave bench`` is, against the fake upstream with known delays.

Targets (bench issue): measurement error ≤ 1 ms for TTFT and inter-token latency at 100
concurrent streams; one bench process drives ≥ 500 streamed requests/s on one core.

1. **accuracy**: a fake with ``--ttft-ms 100 --itl-ms 20 --stamp`` (every content chunk
   carries the fake's ``time.monotonic()`` taken just before it is handed to the server;
   the client's ``time.perf_counter()`` is the same clock on Linux). 100 streams at once,
   ``--rounds`` of them. The error of a measurement is what ``enclave bench`` measured
   minus what the fake actually did: TTFT measured - (first chunk's stamp - request
   sent); each ITL measured - the gap between the two chunks' stamps. Also shown: the
   measured values against the *injected* delays (that includes the fake's own lateness:
   an asyncio sleep wakes late). Before it, a busy loop on each CPU measures the machine's
   own scheduling gaps (another process or the hypervisor taking the CPU): the floor under
   any tail measured here.
2. **throughput**: a fake without delays (``--tokens 16``), the bench closed loop at
   ``--concurrency`` for ``--seconds``; the bench process pinned to one CPU, the fake to
   the other. Requests/s, the bench process's CPU time (``getrusage``), and requests per
   CPU-second of the bench = what one core can drive.

The bench runs in this process (``enclave.bench.runner.run_level`` and ``BenchClient``,
on uvloop: the code ``enclave bench`` runs). Exit status 0 when both targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, warn_if_busy
from bench.machine import scheduling_gaps
from enclave.bench.client import BenchClient, Endpoint
from enclave.bench.metrics import Sample, summarize
from enclave.bench.runner import Load, Request, run_level
from enclave.bench.session import run_async
from enclave.bench.workloads import FixedPrompts
from tests.fakes.procs import run_fake_upstream

TTFT_MS, ITL_MS, TOKENS = 100, 20, 32
TARGET_ERROR_MS = 1.0
TARGET_RPS = 500.0


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def pin_process(pid: int, cpu: int | None) -> None:
    """Every thread of ``pid`` onto ``cpu``."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stamps:
    """The fake's stamp and our arrival time of every content chunk, per request."""

    def __init__(self) -> None:
        self.by_sample: dict[int, list[tuple[float, float]]] = {}

    def __call__(self, sample: Sample, chunk: dict[str, Any], arrival: float) -> None:
        choices = chunk.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content") and "stamp" in chunk:
            self.by_sample.setdefault(id(sample), []).append((arrival, chunk["stamp"]))


def stats(values: list[float]) -> dict[str, float]:
    absolute = [abs(v) for v in values]
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "p50_abs": percentile(absolute, 50),
        "p90_abs": percentile(absolute, 90),
        "within_1ms": sum(1 for v in absolute if v <= TARGET_ERROR_MS) / len(values),
        "p99_abs": percentile(absolute, 99),
        "max_abs": max(absolute),
    }


async def accuracy_run(url: str, streams: int, rounds: int) -> dict[str, Any]:
    stamps = Stamps()
    client = BenchClient(Endpoint.parse(url), on_chunk=stamps)
    request = Request("fake-model", TOKENS)
    load = Load(concurrency=streams, requests=streams * rounds, warmup_requests=streams)
    run = await run_level(client, FixedPrompts(["accuracy"]), request, load)
    await client.aclose()
    ttft_err, itl_err, ttft_vs_injected, itl_vs_injected = [], [], [], []
    for sample in run.samples:
        pairs = stamps.by_sample.get(id(sample), [])
        if not sample.ok or sample.ttft is None or len(pairs) != sample.chunks:
            continue
        ttft_err.append((sample.ttft - (pairs[0][1] - sample.sent)) * 1000)
        ttft_vs_injected.append(sample.ttft * 1000 - TTFT_MS)
        for k, gap in enumerate(sample.itl, 1):
            itl_err.append((gap - (pairs[k][1] - pairs[k - 1][1])) * 1000)
            itl_vs_injected.append(gap * 1000 - ITL_MS)
    summary = summarize(run.samples, run.duration_s)
    return {
        "requests": summary.requests,
        "errors": summary.errors,
        "ttft_error_ms": stats(ttft_err),
        "itl_error_ms": stats(itl_err),
        "ttft_minus_injected_ms": stats(ttft_vs_injected),
        "itl_minus_injected_ms": stats(itl_vs_injected),
    }


async def throughput_run(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    client = BenchClient(Endpoint.parse(url))
    request = Request("fake-model", 16)
    warm = Load(concurrency=concurrency, requests=concurrency * 20)
    await run_level(client, FixedPrompts(["throughput"]), request, warm)
    load = Load(concurrency=concurrency, duration_s=seconds)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    run = await run_level(client, FixedPrompts(["throughput"]), request, load)
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    await client.aclose()
    summary = summarize(run.samples, run.duration_s)
    chunks = sum(s.chunks for s in run.samples)
    return {
        "requests": summary.requests,
        "errors": summary.errors,
        "req_per_s": summary.request_throughput,
        "bench_cpu_fraction": cpu / wall,
        "req_per_cpu_s": summary.completed / cpu if cpu else float("inf"),
        "cpu_us_per_request": 1e6 * cpu / max(summary.completed, 1),
        "chunks_per_request": chunks / max(summary.requests, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--bench-cpu", type=int, default=0)
    parser.add_argument("--fake-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warn_if_busy()
    fake_cpu = None if args.no_pin else args.fake_cpu
    cpus = [] if args.no_pin else [args.bench_cpu, args.fake_cpu]
    gaps = scheduling_gaps(cpus, 2.0)
    pin(None if args.no_pin else args.bench_cpu)
    with run_fake_upstream(ttft_ms=TTFT_MS, itl_ms=ITL_MS, tokens=TOKENS, stamp=True) as fake:
        pin_process(fake.process.pid, fake_cpu)
        accuracy = run_async(accuracy_run(fake.root, args.streams, args.rounds))
    with run_fake_upstream(tokens=16) as fake:
        pin_process(fake.process.pid, fake_cpu)
        throughput = run_async(throughput_run(fake.root, args.concurrency, args.seconds))
    report(accuracy, throughput, args, gaps)
    ttft_ok = accuracy["ttft_error_ms"]["p99_abs"] <= TARGET_ERROR_MS
    itl_ok = accuracy["itl_error_ms"]["p99_abs"] <= TARGET_ERROR_MS
    rps_ok = throughput["req_per_cpu_s"] >= TARGET_RPS
    if args.json:
        data = {"accuracy": accuracy, "throughput": throughput, "config": vars(args), "gaps": gaps}
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return 0 if ttft_ok and itl_ok and rps_ok else 1


def report(
    accuracy: dict[str, Any],
    throughput: dict[str, Any],
    args: argparse.Namespace,
    gaps: dict[str, dict[str, float]],
) -> None:
    for cpu, gap in gaps.items():
        print(f"CPU {cpu}: longest scheduling gap {gap['max_ms']:.2f} ms, "
              f"{gap['over_1ms']:.0f} gaps over 1 ms in 2 s (busy loop, idle)")  # fmt: skip
    print(f"\n1. accuracy: {args.streams} concurrent streams × {args.rounds} rounds, fake "
          f"TTFT {TTFT_MS} ms, ITL {ITL_MS} ms, {TOKENS} tokens; {accuracy['requests']} "
          f"requests, errors {accuracy['errors'] or 'none'}")  # fmt: skip
    print(f"   {'ms':32} {'n':>6} {'mean':>8} {'|p50|':>8} {'|p90|':>8} {'|p99|':>8} "
          f"{'|max|':>8} {'≤ 1 ms':>8}")  # fmt: skip
    for key, label in (
        ("ttft_error_ms", "TTFT error (vs fake's stamps)"),
        ("itl_error_ms", "ITL error (vs fake's stamps)"),
        ("ttft_minus_injected_ms", "TTFT - injected 100 ms"),
        ("itl_minus_injected_ms", "ITL - injected 20 ms"),
    ):
        s = accuracy[key]
        print(f"   {label:32} {s['n']:6d} {s['mean']:8.3f} {s['p50_abs']:8.3f} "
              f"{s['p90_abs']:8.3f} {s['p99_abs']:8.3f} {s['max_abs']:8.3f} "
              f"{100 * s['within_1ms']:7.1f}%")  # fmt: skip
    t = throughput
    print(f"\n2. throughput: closed loop, concurrency {args.concurrency}, {args.seconds:g} s, "
          f"16-token streams; bench on CPU {args.bench_cpu}, fake on {args.fake_cpu}")  # fmt: skip
    print(f"   requests {t['requests']}, errors {t['errors'] or 'none'}, "
          f"{t['chunks_per_request']:.1f} content chunks each")  # fmt: skip
    print(f"   achieved {t['req_per_s']:.0f} req/s with the bench at "
          f"{100 * t['bench_cpu_fraction']:.0f} % of its core; "
          f"{t['cpu_us_per_request']:.0f} µs CPU per request")  # fmt: skip
    print(f"   → one core drives {t['req_per_cpu_s']:.0f} streamed req/s")
    e1, e2 = accuracy["ttft_error_ms"]["p99_abs"], accuracy["itl_error_ms"]["p99_abs"]
    print("\nverdicts:")
    print(f"   TTFT error |p99| {e1:.3f} ms ≤ {TARGET_ERROR_MS} ms: "
          f"{'PASS' if e1 <= TARGET_ERROR_MS else 'FAIL'}")  # fmt: skip
    print(f"   ITL error |p99| {e2:.3f} ms ≤ {TARGET_ERROR_MS} ms: "
          f"{'PASS' if e2 <= TARGET_ERROR_MS else 'FAIL'}")  # fmt: skip
    rps = t["req_per_cpu_s"]
    print(f"   streamed req/s per core {rps:.0f} ≥ {TARGET_RPS:.0f}: "
          f"{'PASS' if rps >= TARGET_RPS else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
