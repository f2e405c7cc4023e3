"""Measuring one server with the load generator: the event loop, fixed-rate latency and
maximum throughput, and their summaries (shared by gateway_overhead and auth_overhead)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from bench import loadgen
from bench.common import percentile
from bench.machine import CpuProbe, cpu_seconds
from bench.overhead_report import MODES
from bench.servers import HOST, MODEL, PROMPT, Server

T = TypeVar("T")


class Bench:
    """One event loop for the whole run; the load generator's garbage collector paused."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runner = asyncio.Runner(loop_factory=loadgen.new_loop)

    def run(self, coro: Coroutine[Any, Any, T], limit: float) -> T:
        gc.collect()
        gc.disable()
        try:
            return self.runner.run(asyncio.wait_for(coro, limit))
        finally:
            gc.enable()

    def request(self, server: Server, mode: str, tokens: int) -> loadgen.Request:
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": mode == "stream",
        }
        return loadgen.Request.chat(HOST, server.port, body, expect_tokens=tokens)

    def verify(self, name: str, request: loadgen.Request, count: int = 5) -> None:
        """A few requests one by one: every answer must be complete and correct."""

        async def go() -> list[loadgen.Result]:
            run = loadgen.Run()
            pool = loadgen.Pool(request.host, request.port, run)
            try:
                return [await pool.exchange(request) for _ in range(count)]
            finally:
                pool.close()

        for result in self.run(go(), 60):
            if not result.ok:
                kind = "streamed" if request.stream else "non-streamed"
                raise RuntimeError(f"{name} does not serve {kind} requests: {result.error}")

    def idle_cpu(self, pid: int, seconds: float = 1.0) -> float:
        """Fraction of a CPU ``pid`` uses with no requests at all (timers, health checks)."""
        before = cpu_seconds(pid)
        time.sleep(seconds)
        return (cpu_seconds(pid) - before) / seconds

    def latency(
        self, request: loadgen.Request, pids: dict[str, int], rate: float
    ) -> dict[str, Any]:
        a = self.args
        probe = CpuProbe(pids)
        run = self.run(
            loadgen.open_loop(request, rate, a.latency_seconds, a.warmup, probe, drain=a.drain),
            a.latency_seconds + a.warmup + a.drain + 30,
        )
        return {"rate": rate, **latency_summary(run, request.stream, probe)}

    def throughput(self, request: loadgen.Request, pids: dict[str, int]) -> dict[str, Any]:
        a = self.args
        probe = CpuProbe(pids)
        run = self.run(
            loadgen.closed_loop(request, a.concurrency, a.throughput_seconds, a.warmup, probe),
            a.throughput_seconds + a.warmup + 120,
        )
        return throughput_summary(run, probe)

    def target(self, name: str, server: Server, fake: Server) -> dict[str, Any]:
        """Maximum throughput, then latency at the fixed rate, non-streamed and streamed.

        A proxy whose maximum is below 1.2x the fixed rate queues without bound at that
        rate; it is also measured at half its maximum, to show its latency when it copes.
        """
        rate = self.args.rate
        pids = {"fake": fake.pid, "loadgen": os.getpid()}
        out: dict[str, Any] = {}
        if server is not fake:
            pids["proxy"] = server.pid
            out["idle_cpu"] = self.idle_cpu(server.pid)
        for mode in MODES:
            request = self.request(server, mode, self.args.tokens)
            self.verify(name, request)
            say(name, mode, "max throughput ...")
            throughput = self.throughput(request, pids)
            say(name, mode, line_throughput(throughput))
            say(name, mode, f"latency at {rate:g} req/s ...")
            latency = self.latency(request, pids, rate)
            say(name, mode, line_latency(latency))
            out[mode] = {"throughput": throughput, "latency": latency}
            if server is not fake and throughput["rps"] < 1.2 * rate:
                low = max(1.0, float(round(throughput["rps"] / 2)))
                say(name, mode, f"overloaded at {rate:g} req/s; latency at {low:g} req/s ...")
                out[mode]["latency_low"] = self.latency(request, pids, low)
                say(name, mode, line_latency(out[mode]["latency_low"]))
        return out


def say(name: str, mode: str, text: str) -> None:
    print(f"  {name:8} {mode:6} {text}", flush=True)


def ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": percentile(values, 50) * 1e3,
        "p90": percentile(values, 90) * 1e3,
        "p99": percentile(values, 99) * 1e3,
        "max": max(values) * 1e3,
        "mean": sum(values) / len(values) * 1e3,
    }


def latency_summary(run: loadgen.Run, stream: bool, probe: CpuProbe) -> dict[str, Any]:
    good = [r for r in run.results if r.ok]
    out: dict[str, Any] = {
        "requests": len(run.results),
        "errors": len(run.failed),
        "first_error": run.failed[0].error if run.failed else None,
        "sent_rps": len(run.results) / run.send_seconds if run.send_seconds > 0 else 0.0,
        "latency_ms": ms([r.latency for r in good]),
        "connections": run.connections,
        "reconnects": run.reconnects,
        "send_lag_ms": ms(run.lag),
        "cpu": probe.usage(),
        "cpu_busy": probe.cpu_busy(),
    }
    if stream:
        out["ttft_ms"] = ms([r.ttft for r in good if r.ttft is not None])
    seconds = probe.seconds()
    if "proxy" in seconds and run.results:
        out["proxy_cpu_us_per_request"] = seconds["proxy"] / len(run.results) * 1e6
    return out


def throughput_summary(run: loadgen.Run, probe: CpuProbe) -> dict[str, Any]:
    good = [r for r in run.results if r.ok]
    cpu = probe.usage()
    rps = len(good) / run.seconds
    out: dict[str, Any] = {
        "requests": len(run.results),
        "errors": len(run.failed),
        "first_error": run.failed[0].error if run.failed else None,
        "rps": rps,
        "latency_ms": ms([r.latency for r in good]),
        "cpu": cpu,
        "cpu_busy": probe.cpu_busy(),
        "reconnects": run.reconnects,
    }
    if "proxy" in cpu and cpu["proxy"] > 0:
        out["rps_per_proxy_core"] = rps / cpu["proxy"]
        out["proxy_cpu_us_per_request"] = cpu["proxy"] * run.seconds / max(len(good), 1) * 1e6
    return out


def line_latency(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    text = f"p50 {lat.get('p50', 0):.2f} ms  p99 {lat.get('p99', 0):.2f} ms"
    if "ttft_ms" in s:
        text += f"  ttft p50 {s['ttft_ms'].get('p50', 0):.2f} ms"
    return text + f"  ({s['requests']} requests, {s['errors']} errors)"


def line_throughput(s: dict[str, Any]) -> str:
    cpu = "  ".join(f"{k} {v * 100:.0f}%" for k, v in s["cpu"].items())
    return f"{s['rps']:.0f} req/s  ({s['errors']} errors)  CPU: {cpu}"
