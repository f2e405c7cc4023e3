"""Workers: throughput of ``enclave serve --workers N`` against one worker, in one run.

One gateway per worker count (default 1 and 2), each on its own port, home and SQLite
file, with the strict audit log on, in front of ONE fake upstream
(``tests.fakes.fake_upstream``, N-word replies, no delays). With ``--auth`` every call
also carries an API key through the limiter, which several workers share in Redis
(``auth.rate_limits: redis``, a ``redis-server`` started here).

The gateways are measured in turn, interleaved round by round (1, 2, 1, 2...), each for
a closed loop of ``--concurrency`` kept-alive connections (``bench/loadgen.py``, in this
process) non-streamed then streamed: requests/s, relayed tokens/s (content words, or
content events of streams), and the gateway's CPU per request (the parent and its
workers, read from /proc over the measured window). Each round also measures the fake
alone (the client straight to it): no gateway relays more than that ceiling.

The gateway with N workers is pinned to the first N CPUs of ``--cpus``; the fake, the
load generator (and Redis) run where the kernel puts them. It prints, per mode, the
ratio N workers / 1 worker of req/s and tokens/s, the scaling per added worker
``(ratio - 1) / (N - 1)`` against the target 0.9, and the ratio of CPU per request
(1 worker / N workers: 1.0 means a request costs a worker as much as it costs a lone
gateway, so throughput grows with workers for as long as there are cores). The target
applies only while cores remain: on a host with fewer than N + 2 CPUs (N gateway
workers, the fake and the load generator) the workers share cores with them and the
req/s ratio says so; the CPU ratio is the part that carries over to bigger hosts.

    .venv/bin/python bench/workers.py                  # about 2 minutes
    .venv/bin/python bench/workers.py --quick          # a smoke run, under 90 s
    .venv/bin/python bench/workers.py --workers 1,4 --cpus 0-3 --auth --json out.json

Exit status: 0 when every call succeeded, 1 when some failed, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen
from bench.common import console_script, warn_if_busy
from bench.machine import TASKSET, tree_cpu_seconds
from bench.servers import HOST, MODEL, PROMPT, log_tail, own_env
from tests.fakes.procs import (
    FakeUpstream,
    ProcessFailed,
    free_port,
    run_fake_upstream,
    stop_process,
    wait_http,
)
from tests.fakes.redis import run_redis

MODES = ("chat", "stream")
DIRECT = 0  # the fake measured without a gateway, as "0 workers"
TARGET = 0.9  # of a worker's throughput gained per added worker (issue 17)
PASSWORD = "bench-password-long-enough\n"


@dataclass
class Gateway:
    workers: int
    port: int
    home: Path
    process: subprocess.Popen[bytes]
    key: str | None = None

    def cli(self, *args: str) -> str:
        env = own_env(ENCLAVE_HOME=str(self.home))
        config = str(self.home / "enclave.yaml")
        done = subprocess.run(
            [console_script("enclave"), "--config", config, *args],
            input=PASSWORD, text=True, capture_output=True, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ProcessFailed(f"enclave {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def settings(fake: FakeUpstream, port: int, redis: str | None) -> dict[str, Any]:
    auth: dict[str, Any] = {"mode": "off"}
    if redis is not None:
        auth = {"mode": "on", "rate_limits": "redis", "redis_url": redis}
    return {
        "port": port,
        "access_log": False,
        "auth": auth,
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "tasks": {"enabled": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": [MODEL]}],
    }


@contextmanager
def gateway(workers: int, cpus: list[int], body: dict[str, Any], folder: Path) -> Iterator[Gateway]:
    """``enclave serve --workers N`` pinned to the first N of ``cpus``, every worker up."""
    home = folder / f"w{workers}"
    home.mkdir(mode=0o700)
    (home / "enclave.yaml").write_text(yaml.safe_dump(body))
    cmd = [console_script("enclave"), "--config", str(home / "enclave.yaml"), "serve",
           "--workers", str(workers)]  # fmt: skip
    pinned = ",".join(str(cpu) for cpu in cpus[:workers])
    if TASKSET:
        cmd = [TASKSET, "-c", pinned, *cmd]
    log = home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                   env=own_env(ENCLAVE_HOME=str(home)))  # fmt: skip
    try:
        url = f"http://{HOST}:{body['port']}/health"
        try:
            wait_http(url, 120, process=process)
            every_worker_up(log, workers)
        except (TimeoutError, ProcessFailed) as exc:
            raise ProcessFailed(f"{workers} workers: {exc}\n{log_tail(log)}") from None
        yield Gateway(workers, body["port"], home, process)
    finally:
        stop_process(process)


def every_worker_up(log: Path, workers: int, timeout: float = 120) -> None:
    """Each worker logged uvicorn's "startup complete" (the first /health reached one)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every one of {workers} workers started in {timeout:.0f}s")
        time.sleep(0.1)


def api_key(gw: Gateway) -> str:
    """A user and a key with a limit far above what the run can reach."""
    gw.cli("users", "add", "bench", "--role", "user", "--password-stdin")
    out = gw.cli("keys", "create", "--user", "bench", "--name", "bench", "--rpm", "100000000")
    return out.splitlines()[0].strip()


def measure(
    port: int, key: str | None, pid: int, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """A closed loop on ``port``; CPU per request of the process tree of ``pid``."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
            "stream": mode == "stream"}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"} if key else None
    request = loadgen.Request.chat(HOST, port, body, expect_tokens=args.tokens, headers=headers)
    cpu: dict[str, float] = {}

    def probe(mark: str) -> None:
        cpu[mark] = tree_cpu_seconds(pid)

    loop = loadgen.new_loop()
    try:
        run = loop.run_until_complete(
            loadgen.closed_loop(request, args.concurrency, args.seconds, args.warmup, probe)
        )
    finally:
        loop.close()
    ok = [r for r in run.results if r.ok]
    return {
        "requests": len(run.results),
        "failed": len(run.failed),
        "first_error": run.failed[0].error if run.failed else None,
        "rps": len(ok) / run.seconds,
        "tokens_per_s": sum(r.tokens for r in ok) / run.seconds,
        "cpu_ms_per_request": 1000 * (cpu["end"] - cpu["start"]) / max(1, len(ok)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    busy = warn_if_busy()
    rounds: dict[int, dict[str, list[dict[str, Any]]]] = {}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="enclave-wk-")))
        fake = stack.enter_context(run_fake_upstream(models=[MODEL], tokens=args.tokens))
        redis = stack.enter_context(run_redis()).url if args.auth else None
        gateways = []
        for count in args.workers:
            gw = stack.enter_context(
                gateway(count, args.cpus, settings(fake, free_port(), redis), folder)
            )
            gw.key = api_key(gw) if args.auth else None
            gateways.append(gw)
            rounds[count] = {mode: [] for mode in MODES}
        rounds[DIRECT] = {mode: [] for mode in MODES}
        for index in range(args.rounds):
            for mode in MODES:  # the fake alone: the ceiling of what a gateway can relay
                rounds[DIRECT][mode].append(measure(fake.port, None, fake.process.pid, mode, args))
            for gw in gateways if index % 2 == 0 else reversed(gateways):
                for mode in MODES:
                    found = measure(gw.port, gw.key, gw.process.pid, mode, args)
                    rounds[gw.workers][mode].append(found)
                    print(f"  round {index + 1} {gw.workers} worker(s) {mode:6} "
                          f"{found['rps']:8.1f} req/s {found['tokens_per_s']:9.1f} tokens/s "
                          f"{found['cpu_ms_per_request']:6.3f} ms CPU/req, "
                          f"{found['failed']} failed", flush=True)  # fmt: skip
    config = {
        "workers": args.workers, "cpus": args.cpus, "host_cpus": os.cpu_count(),
        "auth": args.auth, "tokens": args.tokens, "concurrency": args.concurrency,
        "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
        "cpu_busy_before": busy, "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }  # fmt: skip
    return {"config": config, "rounds": rounds, "results": summary(rounds)}


def summary(rounds: dict[int, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per worker count and mode: the sums over the rounds, and the ratios to the first."""
    out: dict[str, Any] = {}
    base = min(count for count in rounds if count != DIRECT)
    for count, modes in rounds.items():
        for mode, runs in modes.items():
            row = {
                "rps": sum(r["rps"] for r in runs) / len(runs),
                "tokens_per_s": sum(r["tokens_per_s"] for r in runs) / len(runs),
                "cpu_ms_per_request": sum(r["cpu_ms_per_request"] for r in runs) / len(runs),
                "failed": sum(r["failed"] for r in runs),
            }
            out[f"{count}/{mode}"] = row
    for key, row in out.items():
        workers, mode = key.split("/")
        if int(workers) == DIRECT:
            continue
        one = out[f"{base}/{mode}"]
        added = int(workers) - base
        row["rps_ratio"] = row["rps"] / one["rps"] if one["rps"] else 0.0
        row["tokens_ratio"] = (
            row["tokens_per_s"] / one["tokens_per_s"] if one["tokens_per_s"] else 0.0
        )
        row["per_added_worker"] = (row["rps_ratio"] - 1) / added if added else None
        cost = row["cpu_ms_per_request"]
        row["cpu_ratio"] = one["cpu_ms_per_request"] / cost if cost else 0.0
    return out


def table(results: dict[str, Any], host_cpus: int) -> str:
    lines = [
        f"{'workers/mode':17} {'req/s':>9} {'tokens/s':>10} {'ms CPU/req':>10} {'failed':>6} "
        f"{'req/s x':>8} {'tokens x':>8} {'per added':>9} {'CPU/req x':>9}"
    ]
    verdicts = []
    for key, row in results.items():
        if key.startswith(f"{DIRECT}/"):
            lines.append(
                f"{'fake alone ' + key[2:]:17} {row['rps']:9.1f} {row['tokens_per_s']:10.1f}"
            )
            continue
        per = row["per_added_worker"]
        lines.append(
            f"{key:17} {row['rps']:9.1f} {row['tokens_per_s']:10.1f} "
            f"{row['cpu_ms_per_request']:10.3f} {row['failed']:6d} {row['rps_ratio']:7.2f}x "
            f"{row['tokens_ratio']:7.2f}x {'' if per is None else f'{per:.2f}':>9} "
            f"{row['cpu_ratio']:8.2f}x"
        )
        if per is not None:
            workers = int(key.split("/")[0])
            cores = "cores remain" if host_cpus >= workers + 2 else "cores do NOT remain"
            verdict = "PASS" if per >= TARGET else "FAIL"
            verdicts.append(
                f"{key}: {per:.2f} per added worker (target {TARGET}): {verdict} ({cores}: "
                f"{host_cpus} CPUs for {workers} workers + fake + client); CPU per request "
                f"1 worker / {workers}: {row['cpu_ratio']:.2f}x"
            )
    return "\n".join([*lines, "", *verdicts])


def cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus += list(range(int(first), int(last or first) + 1))
    return cpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, the first the base")
    parser.add_argument("--cpus", default=None, help="CPUs for the gateway (default: all)")
    parser.add_argument("--auth", action="store_true", help="API keys, limits in Redis")
    parser.add_argument("--tokens", type=int, default=16, help="words per reply (fast fake)")
    parser.add_argument("--concurrency", type=int, default=32, help="client connections")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.5, help="before each window")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="a smoke run (short windows)")
    parser.add_argument("--json", metavar="FILE", help="write config and results here")
    args = parser.parse_args(argv)
    try:
        args.workers = sorted({int(n) for n in args.workers.split(",")})
        args.cpus = cpu_list(args.cpus) if args.cpus else sorted(os.sched_getaffinity(0))
    except ValueError:
        parser.error("--workers and --cpus: numbers separated by commas (CPUs: 0-3 too)")
    if min(args.workers) < 1 or args.tokens < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--workers, --tokens, --concurrency and --rounds must be positive")
    if args.quick:
        args.seconds, args.warmup, args.rounds = 2.0, 0.5, 1
    return args


def main() -> int:
    args = parse_args()
    try:
        found = run(args)
    except (ProcessFailed, TimeoutError, OSError) as exc:
        print(f"workers: cannot run: {exc}", file=sys.stderr)
        return 2
    print(table(found["results"], os.cpu_count() or 1))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = sum(row["failed"] for row in found["results"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
