"""``bench/audit_write.py --baseline-src DIR``: this checkout against another, side by side.

Rounds alternate the two checkouts (``now``, ``base``, ``now``, ...). Each round is one
child process of ``audit_write.py`` on CPU 0 (``taskset``) with ``PYTHONPATH`` at the
checkout's ``src/`` and fresh databases: a new SQLite file and, with
``--bundled-postgres``, a new database on the tests' throwaway PostgreSQL (started once,
pinned to CPU 1, so every round trip crosses CPUs). Per database and concurrency it
prints the median over rounds of the p50 latency of a strict ``write`` and of the CPU
the whole process spent per record, and the ratio now / base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

SIDES = ("now", "base")


def compare(args: argparse.Namespace, script: Path) -> int:
    from bench.audit_write import TARGET_P50_MS

    srcs = {"now": str(script.resolve().parents[1] / "src"), "base": args.baseline_src}
    rounds: dict[str, list[list[dict[str, Any]]]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        server = _postgres(stack) if args.bundled_postgres else None
        for n in range(args.rounds):
            for side in SIDES:
                url = server.create_database() if server is not None else args.database_url
                print(f"round {n + 1}/{args.rounds}: {side} ({srcs[side]})", flush=True)
                rounds[side].append(_child(script, srcs[side], args, url))
    return _report(rounds, TARGET_P50_MS)


def _postgres(stack: ExitStack) -> Any:
    from bench.machine import pin_tree
    from tests.fakes import postgres

    server = postgres.PostgresServer.start()
    stack.callback(server.stop)
    if server.process is not None and len(os.sched_getaffinity(0)) > 1:
        pin_tree(server.process.pid, {sorted(os.sched_getaffinity(0))[1]})
    return server


def _child(script: Path, src: str, args: argparse.Namespace, url: str | None) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--records", str(args.records)]
        cmd += ["--concurrency", args.concurrency, "--json", str(out)]
        cmd += ["--database-url", url] if url else []
        cpu = sorted(os.sched_getaffinity(0))[0]
        env = {**os.environ, "PYTHONPATH": src}
        subprocess.run(["taskset", "-c", str(cpu), *cmd], env=env, check=False,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        if not out.exists():
            raise SystemExit(f"the child for {src} wrote no results")
        result: list[Any] = json.loads(out.read_text())
        return result


def _report(rounds: dict[str, list[list[dict[str, Any]]]], target: float) -> int:
    def median(side: str, db: int, level: int, field: str) -> float:
        return float(statistics.median(r[db]["levels"][level][field] for r in rounds[side]))

    first = rounds["now"][0]
    print()
    print(f"{'database':<12} {'conc':>5} {'p50 ms now':>11} {'base':>8} {'ratio':>7} "
          f"{'CPU µs/rec now':>15} {'base':>7} {'ratio':>7}")  # fmt: skip
    met = all(result["ok"] for side in SIDES for r in rounds[side] for result in r)
    fast = True
    for db, result in enumerate(first):
        for level, row in enumerate(result["levels"]):
            p50 = [median(side, db, level, "p50_ms") for side in SIDES]
            cpu = [median(side, db, level, "cpu_us_per_record") for side in SIDES]
            print(f"{result['database']:<12} {row['concurrency']:>5} {p50[0]:>11.3f} "
                  f"{p50[1]:>8.3f} {p50[0] / p50[1]:>7.2f} {cpu[0]:>15.0f} {cpu[1]:>7.0f} "
                  f"{cpu[0] / cpu[1]:>7.2f}")  # fmt: skip
            if row["concurrency"] == 1:
                fast = fast and p50[0] <= target
    print(f"medians of {len(rounds['now'])} alternating rounds; every chain verified: {met}")
    met = met and fast
    print(f"target: now, p50 at concurrency 1 ≤ {target} ms: {'PASS' if met else 'FAIL'}")
    return 0 if met else 1
