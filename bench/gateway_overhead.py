"""Gateway overhead: direct vs through ``enclave serve``, nginx and LiteLLM's proxy.

Targets (gateway issue): against the same fake upstream, added latency p50 <= 1 ms and
p99 <= 5 ms at 200 req/s; at least 3x LiteLLM's requests/s per core; 1,000 concurrent
streams held by one enclave process.

Set-up: one fake upstream (``tests.fakes.fake_upstream``, vLLM's protocol, N-word replies,
no delays) and the load generator (``bench/loadgen.py``, kept-alive HTTP/1.1 connections of
``enclave.http1``) are pinned to one CPU; the proxy being measured, ``enclave --config F serve
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
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/gateway_overhead.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402

from bench import litellm_env, loadgen  # noqa: E402
from bench.common import console_script, warn_if_busy  # noqa: E402
from bench.held_streams import audited_streams  # noqa: E402
from bench.machine import (  # noqa: E402
    CpuProbe,
    choose_cpus,
    cpu_seconds,
    memory_kib,
    raise_fd_limit,
    scheduling_gaps,
    steal_ticks,
)
from bench.measure import Bench, ms  # noqa: E402
from bench.nginx_proxy import run_nginx  # noqa: E402
from bench.overhead_report import (  # noqa: E402
    BASELINE,
    DIRECT,
    ENCLAVE,
    ENCLAVE_LOG,
    LITELLM,
    NGINX,
    report,
    verdicts,
)
from bench.servers import HOST, MODEL, Server, own_env, run_fake, serve  # noqa: E402
from tests.fakes.procs import ProcessFailed, free_port  # noqa: E402


@contextmanager
def run_enclave(
    name: str,
    upstream: Server,
    cpu: int | None,
    logs: Path,
    *,
    access_log: bool = False,
    src: Path | None = None,
) -> Iterator[Server]:
    """``enclave serve`` in front of ``upstream``; from the source tree ``src`` if given
    (another commit's ``src/``, for a before/after in one run), else this one."""
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
    env = own_env(ENCLAVE_HOME=str(home), **({"PYTHONPATH": str(src)} if src else {}))
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
        if a.held_rounds:
            print(f"  {a.streams} streams through audited gateways ...", flush=True)
            through["audited"] = audited_streams(bench, slow, logs, proxy_cpu, a.held_rounds)
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
        if args.baseline_src:
            with run_enclave(BASELINE, fake, proxy_cpu, logs, src=args.baseline_src) as gateway:
                print(f"enclave from {args.baseline_src}, pid {gateway.pid}", flush=True)
                results["targets"][BASELINE] = bench.target(BASELINE, gateway, fake)
        with run_enclave(ENCLAVE, fake, proxy_cpu, logs) as gateway:
            print(
                f"enclave on port {gateway.port} (pid {gateway.pid}), CPU {proxy_cpu}", flush=True
            )
            results["targets"][ENCLAVE] = bench.target(ENCLAVE, gateway, fake)
            results["enclave_rss_mib"] = memory_kib(gateway.pid).get("VmHWM", 0) / 1024
        if args.nginx:
            with run_nginx(fake, proxy_cpu, logs) as proxy:
                print(f"nginx on port {proxy.port} (pid {proxy.pid}), CPU {proxy_cpu}", flush=True)
                results["targets"][NGINX] = bench.target(NGINX, proxy, fake)
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
    parser.add_argument(
        "--baseline-src",
        type=Path,
        metavar="DIR",
        help="also measure enclave served from this src/ (e.g. a worktree of an earlier "
        "commit) as the column enclave@base, for a before/after in one run",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (and its install)")
    parser.add_argument(
        "--no-nginx", dest="nginx", action="store_false", help="skip nginx (Debian's package)"
    )
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
        "--held-rounds",
        type=int,
        help="interleaved rounds of the streams through audited gateways (2; quick 1; 0 skips)",
    )
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
    args.held_rounds = (1 if quick else 2) if args.held_rounds is None else args.held_rounds
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
