"""Gateway overhead: direct vs through ``enclave serve`` vs through LiteLLM's proxy.

Targets (gateway issue): against the same fake upstream, added latency p50 <= 1 ms and
p99 <= 5 ms at 200 req/s; at least 3x LiteLLM's requests/s per core; 1,000 concurrent
streams held by one enclave process.

Set-up: one fake upstream (``tests.fakes.fake_upstream``, vLLM's protocol, N-word replies,
no delays) and the load generator (``bench/loadgen.py``, raw asyncio HTTP/1.1 with kept-alive
connections) are pinned to one CPU; the proxy being measured, ``enclave --config F serve
--no-engine`` (one process, ``access_log: false``) or ``litellm --num_workers 1`` (its own
virtualenv, offline), to the other, one at a time. So "per core" means what it says, and
the CPU time each process used is read from /proc to show which one was the limit.

Measured for each target (direct = the fake itself), non-streamed and streamed:

1. latency at a fixed 200 req/s (open loop, after a warm-up): p50/p99 of each, the added
   latency (target - direct), and time to first token for streams;
2. maximum requests/s (closed loop, C connections back to back), the proxy's CPU use and
   requests per CPU-second of the proxy (requests/s per core);
3. 1,000 streams opened at once through one fresh enclave process against a slow fake
   (``--itl-ms 100 --tokens 50``): how many ended with all chunks and ``[DONE]``, wall time,
   the gateway's resident memory.

Run from the repository root, on an otherwise idle 2-CPU machine::

    ./task bench gateway_overhead                  # full run, about 5 minutes
    .venv/bin/python bench/gateway_overhead.py --quick --json /tmp/overhead.json
    .venv/bin/python bench/gateway_overhead.py --no-litellm

Exit status: 0 all targets met, 1 a target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/gateway_overhead.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402

from bench import litellm_env, loadgen  # noqa: E402
from bench.common import console_script, percentile, warn_if_busy  # noqa: E402
from bench.overhead_report import (  # noqa: E402
    DIRECT,
    ENCLAVE,
    ENCLAVE_LOG,
    LITELLM,
    MODES,
    report,
    verdicts,
)
from tests.fakes.procs import ProcessFailed, free_port, stop_process, wait_http  # noqa: E402

HOST = "127.0.0.1"
MODEL = "fake-model"
PROMPT = "hello"
TASKSET = shutil.which("taskset")
T = TypeVar("T")


# --- processes, CPUs, memory -------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def serve(
    name: str,
    cmd: list[str],
    *,
    port: int,
    health: str,
    env: dict[str, str],
    cpu: int | None,
    logs: Path,
    timeout: float,
) -> Iterator[Server]:
    """Start ``cmd`` (pinned to ``cpu``) with exactly ``env``; wait for ``health``; stop it."""
    log = logs / f"{name}.log"
    full = [TASKSET, "-c", str(cpu), *cmd] if cpu is not None and TASKSET else cmd
    with log.open("wb") as out:
        process = subprocess.Popen(
            full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        try:
            wait_http(f"http://{HOST}:{port}{health}", timeout, process=process)
        except (TimeoutError, ProcessFailed) as exc:
            raise ProcessFailed(f"{name}: {exc}\n--- {log} ---\n{log_tail(log)}") from None
        if cpu is not None:
            pin_threads(process.pid, {cpu})
        yield Server(name, port, process, log)
    finally:
        stop_process(process)


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_jiffies() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies of each CPU from /proc/stat, keyed by its number."""
    out: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            fields = [int(v) for v in values[:8]]
            idle = fields[3] + fields[4]
            out[name[3:]] = (sum(fields) - idle, sum(fields))
    return out


class CpuProbe:
    """CPU seconds of named processes, and how busy each CPU was, over a measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.marks: dict[str, tuple[float, dict[str, float]]] = {}
        self.jiffies: dict[str, dict[str, tuple[int, int]]] = {}

    def __call__(self, mark: str) -> None:
        self.marks[mark] = (time.perf_counter(), {k: cpu_seconds(p) for k, p in self.pids.items()})
        self.jiffies[mark] = cpu_jiffies()

    def cpu_busy(self) -> dict[str, float]:
        """Fraction of each CPU busy during the window, whoever used it."""
        if "start" not in self.jiffies or "end" not in self.jiffies:
            return {}
        a, b = self.jiffies["start"], self.jiffies["end"]
        return {c: (b[c][0] - a[c][0]) / max(b[c][1] - a[c][1], 1) for c in a if c in b}

    def usage(self) -> dict[str, float]:
        """Fraction of one CPU each process used during the window."""
        if "start" not in self.marks or "end" not in self.marks:
            return {}
        (t0, c0), (t1, c1) = self.marks["start"], self.marks["end"]
        return {k: (c1[k] - c0[k]) / (t1 - t0) for k in self.pids}

    def seconds(self) -> dict[str, float]:
        if "start" not in self.marks or "end" not in self.marks:
            return {}
        c0, c1 = self.marks["start"][1], self.marks["end"][1]
        return {k: c1[k] - c0[k] for k in self.pids}


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def choose_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The proxy's CPU and the load generator's + fake's CPU (None: no pinning)."""
    allowed = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(allowed) < 2:
        if len(allowed) < 2:
            print("warning: fewer than 2 CPUs, nothing pinned", file=sys.stderr)
        return None, None
    proxy = args.proxy_cpu if args.proxy_cpu is not None else allowed[0]
    load = args.load_cpu if args.load_cpu is not None else allowed[1]
    if proxy == load:
        raise SystemExit("--proxy-cpu and --load-cpu must differ")
    return proxy, load


# --- the three servers ----------------------------------------------------------------


def fake_command(port: int, tokens: int, itl_ms: int = 0) -> list[str]:
    module = [sys.executable, "-m", "tests.fakes.fake_upstream", "--port", str(port)]
    return [*module, "--models", MODEL, "--tokens", str(tokens), "--itl-ms", str(itl_ms)]


def own_env(**extra: str) -> dict[str, str]:
    """The caller's environment without ENCLAVE_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    return {**env, **extra}


@contextmanager
def run_fake(name: str, tokens: int, itl_ms: int, cpu: int | None, logs: Path) -> Iterator[Server]:
    port = free_port()
    with serve(
        name,
        fake_command(port, tokens, itl_ms),
        port=port,
        health="/health",
        env=own_env(PYTHONPATH=str(REPO_ROOT)),
        cpu=cpu,
        logs=logs,
        timeout=30,
    ) as server:
        yield server


@contextmanager
def run_enclave(
    name: str, upstream: Server, cpu: int | None, logs: Path, *, access_log: bool = False
) -> Iterator[Server]:
    port = free_port()
    home = logs / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "port": port,
        "access_log": access_log,
        # The routing path alone, like LiteLLM without its logging: what the audit adds is
        # measured by bench/auth_overhead.py.
        "audit": {"enabled": False},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {"name": "fake", "base_url": f"http://{HOST}:{upstream.port}/v1", "models": [MODEL]}
        ],
    }
    path = home / "enclave.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [console_script("enclave"), "--config", str(path), "serve", "--no-engine"]
    env = own_env(ENCLAVE_HOME=str(home))
    with serve(
        name, cmd, port=port, health="/health", env=env, cpu=cpu, logs=logs, timeout=60
    ) as server:
        yield server


@contextmanager
def run_litellm(exe: Path, upstream: Server, cpu: int | None, logs: Path) -> Iterator[Server]:
    port = free_port()
    home = logs / "home-litellm"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "litellm.yaml"
    litellm_env.write_config(config, f"http://{HOST}:{upstream.port}/v1", MODEL)
    cmd = litellm_env.command(exe, config, HOST, port)
    env = litellm_env.environment(home)
    with serve(
        LITELLM,
        cmd,
        port=port,
        health="/health/liveliness",
        env=env,
        cpu=cpu,
        logs=logs,
        timeout=180,
    ) as server:
        yield server


# --- measuring ------------------------------------------------------------------------


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


# --- 1,000 streams ----------------------------------------------------------------------


def many_streams(bench: Bench, logs: Path, proxy_cpu: int | None) -> dict[str, Any]:
    """N streams at once against a slow fake: directly, then through one fresh enclave."""
    a = bench.args
    with ExitStack() as stack:
        slow = stack.enter_context(
            run_fake("fake-slow", a.streams_tokens, a.streams_itl_ms, None, logs)
        )
        print(f"  {a.streams} streams directly to the slow fake ...", flush=True)
        direct = burst(bench, slow, {"fake": slow.pid, "loadgen": os.getpid()}, None)
        gateway = stack.enter_context(run_enclave("enclave-streams", slow, proxy_cpu, logs))
        pids = {"proxy": gateway.pid, "fake": slow.pid, "loadgen": os.getpid()}
        print(f"  {a.streams} streams through one enclave process ...", flush=True)
        through = burst(bench, gateway, pids, gateway.pid)
    through["direct"] = direct
    through["pass"] = through["completed"] == a.streams
    return through


def burst(bench: Bench, server: Server, pids: dict[str, int], watch: int | None) -> dict[str, Any]:
    """One burst of streams; RSS and CPU of ``watch`` sampled while it runs."""
    a = bench.args
    request = bench.request(server, "stream", a.streams_tokens)
    bench.verify(server.name, request, count=1)
    idle = memory_kib(watch) if watch else {}
    rss: list[int] = []
    cpu: list[tuple[float, float]] = []

    async def sample() -> None:
        while watch:
            rss.append(memory_kib(watch).get("VmRSS", 0))
            cpu.append((time.perf_counter(), cpu_seconds(watch)))
            await asyncio.sleep(0.05)

    probe = CpuProbe(pids)
    probe("start")
    run = bench.run(loadgen.burst(request, a.streams, during=sample), 300)
    probe("end")
    ok = [r for r in run.results if r.ok]
    out: dict[str, Any] = {
        "streams": a.streams,
        "completed": len(ok),
        "failed": len(run.failed),
        "first_error": run.failed[0].error if run.failed else None,
        "tokens_per_stream": a.streams_tokens,
        "itl_ms": a.streams_itl_ms,
        "wall_s": run.seconds,
        "ideal_s": a.streams_itl_ms * (a.streams_tokens - 1) / 1e3,
        "latency_ms": ms([r.latency for r in ok]),
        "ttft_ms": ms([r.ttft for r in ok if r.ttft is not None]),
        "cpu": probe.usage(),
    }
    if watch:
        out["rss_idle_mib"] = idle.get("VmRSS", 0) / 1024
        out["rss_peak_mib"] = max(rss, default=0) / 1024
        out["rss_hwm_mib"] = memory_kib(watch).get("VmHWM", 0) / 1024
        out["proxy_cpu_peak"] = peak_rate(cpu, 0.5)
        events = a.streams * (a.streams_tokens + 3)  # role chunk, N tokens, finish, [DONE]
        out["proxy_cpu_us_per_event"] = probe.seconds()["proxy"] / events * 1e6
    return out


def peak_rate(samples: list[tuple[float, float]], window: float) -> float:
    """The highest CPU use (fraction of one CPU) over any ``window`` seconds of samples."""
    best = 0.0
    j = 0
    for i in range(len(samples)):
        while samples[i][0] - samples[j][0] > window:
            j += 1
        span = samples[i][0] - samples[j][0]
        if span >= window / 2:
            best = max(best, (samples[i][1] - samples[j][1]) / span)
    return best


# --- the whole run --------------------------------------------------------------------


GAPS = """
import sys, time
end = time.perf_counter() + float(sys.argv[1])
last, gaps = time.perf_counter(), []
while (now := time.perf_counter()) < end:
    if now - last > 2e-4:
        gaps.append(now - last)
    last = now
print(max(gaps, default=0.0), sum(1 for g in gaps if g > 1e-3))
"""


def scheduling_gaps(cpus: list[int], seconds: float) -> dict[str, dict[str, float]]:
    """A busy loop on each CPU at once: the longest time it was not run, and how often.

    On a virtual machine the hypervisor takes a CPU away for milliseconds at a time; that
    is the floor under any p99 measured here.
    """
    if not TASKSET:
        return {}
    procs = {
        cpu: subprocess.Popen(
            [TASKSET, "-c", str(cpu), sys.executable, "-c", GAPS, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for cpu in cpus
    }
    out: dict[str, dict[str, float]] = {}
    for cpu, proc in procs.items():
        longest, count = proc.communicate()[0].split()
        out[str(cpu)] = {"max_ms": float(longest) * 1e3, "over_1ms": int(count)}
    return out


def steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def measure(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    proxy_cpu, load_cpu = choose_cpus(args)
    pinned = [c for c in (proxy_cpu, load_cpu) if c is not None]
    gap_seconds = 1.0 if args.quick else 2.0
    noise: dict[str, Any] = {"seconds": gap_seconds, "gaps": scheduling_gaps(pinned, gap_seconds)}
    steal0 = steal_ticks()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # the load generator; the fakes inherit it
    bench = Bench(args)
    results: dict[str, Any] = {"targets": {}, "machine": noise}
    exe = None if args.no_litellm else litellm_env.ensure()
    with bench.runner, run_fake("fake", args.tokens, 0, None, logs) as fake:
        print(f"fake upstream on port {fake.port} (pid {fake.pid}), CPU {load_cpu}", flush=True)
        results["targets"][DIRECT] = bench.target(DIRECT, fake, fake)
        with run_enclave(ENCLAVE, fake, proxy_cpu, logs) as gateway:
            print(
                f"enclave on port {gateway.port} (pid {gateway.pid}), CPU {proxy_cpu}", flush=True
            )
            results["targets"][ENCLAVE] = bench.target(ENCLAVE, gateway, fake)
            results["enclave_rss_mib"] = memory_kib(gateway.pid).get("VmHWM", 0) / 1024
        if exe is not None:
            with run_litellm(exe, fake, proxy_cpu, logs) as proxy:
                print(
                    f"litellm on port {proxy.port} (pid {proxy.pid}), CPU {proxy_cpu}", flush=True
                )
                results["targets"][LITELLM] = bench.target(LITELLM, proxy, fake)
                results["litellm_rss_mib"] = memory_kib(proxy.pid).get("VmHWM", 0) / 1024
        if args.access_log:
            with run_enclave(ENCLAVE_LOG, fake, proxy_cpu, logs, access_log=True) as gateway:
                print(f"enclave with access_log on, pid {gateway.pid}", flush=True)
                results["targets"][ENCLAVE_LOG] = bench.target(ENCLAVE_LOG, gateway, fake)
        if args.streams:
            results["streams"] = many_streams(bench, logs, proxy_cpu)
    steal1 = steal_ticks()
    noise["steal"] = (steal1[0] - steal0[0]) / max(steal1[1] - steal0[1], 1)
    results["cpus"] = {"proxy": proxy_cpu, "load_and_fake": load_cpu}
    return results


def run(args: argparse.Namespace) -> int:
    nofile = raise_fd_limit(max(4 * args.streams + 1024, 8192))
    busy = warn_if_busy()
    logs = Path(tempfile.mkdtemp(prefix="enclave-overhead-"))
    keep = False
    try:
        results = measure(args, logs)
    except BaseException:
        keep = True
        print(f"logs kept in {logs}", file=sys.stderr)
        raise
    finally:
        if not keep and not args.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
    config = {
        "tokens": args.tokens,
        "rate": args.rate,
        "latency_seconds": args.latency_seconds,
        "throughput_seconds": args.throughput_seconds,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "streams": args.streams,
        "cpus": os.cpu_count(),
        "cpu_busy_before": busy,
        "nofile": nofile,
        "proxy_cpu": results["cpus"]["proxy"],
        "litellm": "skipped" if args.no_litellm else litellm_env.installed_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    verdict = verdicts(results)
    report(results, config, verdict)
    if args.json:
        payload = {"config": config, "results": results, "verdict": verdict}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(v is False for v in verdict.values()) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: about 2 minutes")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (and its install)")
    parser.add_argument("--tokens", type=int, default=16, help="words per reply (fast fake)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--latency-seconds", type=float, help="open-loop window (10; quick 3)")
    parser.add_argument("--throughput-seconds", type=float, help="closed-loop window (8; quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up before each window (2; quick 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (0: skip)")
    parser.add_argument("--streams-tokens", type=int, default=50)
    parser.add_argument("--streams-itl-ms", type=int, default=100)
    parser.add_argument(
        "--drain",
        type=float,
        default=60.0,
        help="seconds to wait for answers after a fixed-rate run",
    )
    log = parser.add_mutually_exclusive_group()
    log.add_argument(
        "--access-log",
        dest="access_log",
        action="store_true",
        default=None,
        help="also measure enclave with access_log on (default: not with --quick)",
    )
    log.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--proxy-cpu", type=int, help="CPU for the proxy (default: the first)")
    parser.add_argument("--load-cpu", type=int, help="CPU for fake + load (default: the second)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--json", metavar="FILE", help="write config, results and verdicts here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.latency_seconds = args.latency_seconds or (3.0 if quick else 10.0)
    args.throughput_seconds = args.throughput_seconds or (3.0 if quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.access_log = (not quick) if args.access_log is None else args.access_log
    if args.tokens < 1 or args.rate <= 0 or args.concurrency < 1 or args.streams_tokens < 1:
        parser.error("--tokens, --rate, --concurrency and --streams-tokens must be positive")
    return args


def main() -> int:
    args = parse_args()
    try:
        return run(args)
    except (
        ProcessFailed,
        TimeoutError,
        RuntimeError,
        OSError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
