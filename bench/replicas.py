"""Replicas: throughput of 1, 2 and 4 gateway replicas behind nginx, and the cost of
shared state, in one run.

Every configuration is the same path, client → nginx → ``enclave serve`` → one fake
upstream (``tests.fakes.fake_upstream``, N-word replies, no delays), with authentication
on (an API key with a requests-per-minute limit, so every call passes the limiter) and
the strict audit log on. The replicas are started as the replica tests start them
(``tests/replicas.py``: one config file, one database, one ``secret.key``, nginx with
the deployment's directives, ``tests/fakes/nginx.py``):

- ``sqlite``: ONE replica on its own SQLite file with the in-memory limiter (the
  single-gateway default) — the reference for the cost of shared state;
- ``shared-1``, ``shared-2``, ``shared-4``: 1, 2, 4 replicas on one PostgreSQL (the test
  suite's bundled server, ``fsync=off``: a throwaway, cheaper per commit than a durable
  one) and one Redis (``auth.rate_limits: redis``).

For each: a closed loop of ``--concurrency`` kept-alive connections (``bench/loadgen.py``)
for ``--seconds`` after ``--warmup``, non-streamed then streamed: requests/s and relayed
tokens/s (words of content, or content events of streams), failures, and the ratios side
by side: shared-1 / sqlite (the cost of PostgreSQL audit + Redis limits) and shared-N /
shared-1 (scaling). nginx runs one worker per CPU (``worker_processes auto``). Nothing
is pinned: every process shares the machine's CPUs, so on a 2-CPU machine more replicas
mostly add contention; say how many CPUs with the numbers.

Run from the repository root, on an otherwise idle machine::

    ./task bench replicas                                   # about 3 minutes
    .venv/bin/python bench/replicas.py --seconds 2 --warmup 1 --replicas 1,2 --json out.json

Exit status: 0 when every call succeeded, 1 when some failed, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen
from bench.common import warn_if_busy
from bench.servers import HOST, MODEL, PROMPT
from tests.fakes import postgres as pg
from tests.fakes.procs import FakeUpstream, ProcessFailed, run_fake_upstream
from tests.fakes.redis import run_redis
from tests.replicas import Cluster, run_cluster

SQLITE = "sqlite"
MODES = ("chat", "stream")


def settings(fake: FakeUpstream, database: str | None, redis: str | None) -> dict[str, Any]:
    auth: dict[str, Any] = {"mode": "on"}
    if redis is not None:
        auth |= {"rate_limits": "redis", "redis_url": redis}
    body: dict[str, Any] = {
        "access_log": False,
        "auth": auth,
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "tasks": {"enabled": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": [MODEL]}],
    }
    if database is not None:
        body["database_url"] = database
    return body


def api_key(cluster: Cluster) -> str:
    """A user and a key with a limit far above what the run can reach."""
    steps = [
        ("users", "add", "bench", "--role", "user", "--password-stdin"),
        ("keys", "create", "--user", "bench", "--name", "bench", "--rpm", "100000000"),
    ]
    out = ""
    for step in steps:
        done = cluster.cli(*step, stdin="bench-password-long-enough\n")
        if done.returncode != 0:
            raise ProcessFailed(f"enclave {' '.join(step)}: {done.stderr.strip()}")
        out = done.stdout
    return out.splitlines()[0].strip()


def measure(cluster: Cluster, key: str, args: argparse.Namespace) -> dict[str, Any]:
    port = cluster.nginx.port
    found: dict[str, Any] = {}
    for mode in MODES:
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                "stream": mode == "stream"}  # fmt: skip
        request = loadgen.Request.chat(
            HOST, port, body, expect_tokens=args.tokens,
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        loop = loadgen.new_loop()
        try:
            run = loop.run_until_complete(
                loadgen.closed_loop(request, args.concurrency, args.seconds, args.warmup)
            )
        finally:
            loop.close()
        ok = [r for r in run.results if r.ok]
        found[mode] = {
            "requests": len(run.results),
            "failed": len(run.failed),
            "first_error": run.failed[0].error if run.failed else None,
            "rps": len(ok) / run.seconds,
            "tokens_per_s": sum(r.tokens for r in ok) / run.seconds,
        }
        print(f"  {mode:6} {found[mode]['rps']:8.1f} req/s {found[mode]['tokens_per_s']:10.1f} "
              f"tokens/s, {found[mode]['failed']} failed", flush=True)  # fmt: skip
    return found


@contextmanager
def configuration(
    name: str, fake: FakeUpstream, replicas: int, redis: str | None, base: Path
) -> Iterator[Cluster]:
    """One configuration's cluster; a fresh PostgreSQL database unless ``sqlite``."""
    with ExitStack() as stack:
        database = None
        if name != SQLITE:
            server = pg.shared_server()
            database = server.create_database()
            stack.callback(server.drop_database, database.rsplit("/", 1)[1])
        body = settings(fake, database, redis if name != SQLITE else None)
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        yield stack.enter_context(run_cluster(folder, body, replicas, nginx_workers="auto"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    busy = warn_if_busy()
    counts = [int(n) for n in args.replicas.split(",")]
    plan = [(SQLITE, 1)] + [(f"shared-{n}", n) for n in counts]
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="enclave-replicas-") as folder,
        run_fake_upstream(models=[MODEL], tokens=args.tokens) as fake,
        run_redis() as redis,
    ):
        for name, replicas in plan:
            print(f"{name}: {replicas} replica(s) behind nginx", flush=True)
            with configuration(name, fake, replicas, redis.url, Path(folder)) as cluster:
                results[name] = measure(cluster, api_key(cluster), args)
    config = {
        "tokens": args.tokens, "concurrency": args.concurrency, "seconds": args.seconds,
        "warmup": args.warmup, "cpus": os.cpu_count(), "cpu_busy_before": busy,
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }  # fmt: skip
    return {"config": config, "results": results}


def table(results: dict[str, Any]) -> str:
    """The numbers and their ratios side by side."""
    one = next((name for name in results if name.startswith("shared")), None)
    lines = [
        f"{'configuration':14} {'mode':6} {'req/s':>9} {'tokens/s':>10} {'failed':>6} "
        f"{'vs sqlite':>9} {'vs shared-1':>11}"
    ]
    for name, modes in results.items():
        for mode in MODES:
            row = modes[mode]
            vs_sqlite = _ratio(row, results.get(SQLITE, {}).get(mode))
            vs_one = _ratio(row, results[one][mode]) if one and name != SQLITE else ""
            lines.append(
                f"{name:14} {mode:6} {row['rps']:9.1f} {row['tokens_per_s']:10.1f} "
                f"{row['failed']:6d} {vs_sqlite:>9} {vs_one:>11}"
            )
    return "\n".join(lines)


def _ratio(row: dict[str, Any], reference: dict[str, Any] | None) -> str:
    if not reference or not reference["rps"]:
        return ""
    return f"{row['rps'] / reference['rps']:.2f}x"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2,4", help="replica counts on shared state")
    parser.add_argument("--tokens", type=int, default=16, help="words per reply (fast fake)")
    parser.add_argument("--concurrency", type=int, default=32, help="client connections")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each window")
    parser.add_argument("--json", metavar="FILE", help="write config and results here")
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.replicas.split(",")]
    except ValueError:
        parser.error("--replicas: numbers separated by commas, e.g. 1,2,4")
    if not counts or min(counts) < 1 or args.tokens < 1 or args.concurrency < 1:
        parser.error("--replicas, --tokens and --concurrency must be positive")
    return args


def main() -> int:
    args = parse_args()
    try:
        found = run(args)
    except (ProcessFailed, TimeoutError, OSError, pg.PostgresUnavailable) as exc:
        print(f"replicas: cannot run: {exc}", file=sys.stderr)
        return 2
    print(table(found["results"]))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = sum(m[mode]["failed"] for m in found["results"].values() for mode in MODES)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
