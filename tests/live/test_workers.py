"""``enclave serve --workers 2``: one real parent and its two worker processes on one
port (SQLite, authentication on with the limits in a real ``redis-server``, the fake
upstream), as a host runs them.

One gateway for the module; the tests run in order and the last one stops it. Which
worker answered is read from the audit witness (each line names the process that
committed the head, ``audit.witness_interval_s: 0`` writes one per commit).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from enclave.engine.supervisor import EngineSupervisor
from tests.fakes.procs import FakeUpstream
from tests.fakes.redis import INSTALL_HINT, redis_server_path, run_redis
from tests.gateway import ENCLAVE, Gateway, add_user, cli, run_gateway
from tests.helpers import assert_one_line_error

MODEL = "fake-model"
CALLS = 24  # each on a new connection: the kernel spreads them over the workers
WAIT_S = 60.0


RPM = 5  # the limited key's requests per minute, for the whole gateway


def config(fake: FakeUpstream) -> dict[str, object]:
    return {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "f", "base_url": fake.base_url, "models": [MODEL]}],
        "audit": {"witness_interval_s": 0},
        "watch_config": False,  # reloads by SIGHUP only, so they can be counted
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[Gateway]:
    if redis_server_path() is None:
        pytest.skip(INSTALL_HINT)
    home = tmp_path_factory.mktemp("workers")
    with run_redis() as redis:
        auth = {"mode": "on", "rate_limits": "redis", "redis_url": redis.url}
        with run_gateway(home, {**config(fake), "auth": auth}, args=("--workers", "2")) as gw:
            add_user(gw, "dev", "user", "dev-password-long")
            KEYS["free"] = new_key(gw, "free")
            KEYS["limited"] = new_key(gw, "limited", "--rpm", str(RPM))
            yield gw


KEYS: dict[str, str] = {}


def new_key(gateway: Gateway, name: str, *limits: str) -> str:
    made = cli(gateway, "keys", "create", "--user", "dev", "--name", name, *limits)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0].strip()


def workers(gateway: Gateway) -> set[int]:
    """The parent's child processes now."""
    pid = gateway.running.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


def until(check: object, what: str, gateway: Gateway) -> None:
    deadline = time.monotonic() + WAIT_S
    while not callable(check) or not check():
        assert time.monotonic() < deadline, f"{what}, not within {WAIT_S}s:\n{gateway.log()}"
        time.sleep(0.05)


def call(gateway: Gateway, text: str = "hi", key: str = "free") -> httpx.Response:
    """One chat call on a connection of its own."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {KEYS[key]}"}
    return httpx.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=30)


def witness(gateway: Gateway) -> list[str]:
    return (gateway.home / "witness" / "audit.witness").read_text().splitlines()


def witnessed_by(lines: list[str]) -> set[int]:
    """The processes that wrote ``lines`` (the CLI's commands write some too)."""
    return {int(json.loads(line)["by"].rsplit(":", 1)[1]) for line in lines}


def audited(gateway: Gateway, action: str) -> int:
    with sqlite3.connect(gateway.home / "enclave.db") as db:
        row = db.execute("SELECT count(*) FROM audit WHERE action = ?", (action,)).fetchone()
        return int(row[0])


def test_calls_are_spread_over_the_workers_into_one_chain(gateway: Gateway) -> None:
    until(lambda: len(workers(gateway)) == 2, "two workers", gateway)
    pids, before = workers(gateway), len(witness(gateway))
    for index in range(CALLS):
        assert call(gateway, f"call {index}").status_code == 200
    assert (
        witnessed_by(witness(gateway)[before:]) == pids
    )  # both answered, each extended the one chain
    verified = cli(gateway, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_keys_limit_holds_across_the_workers(gateway: Gateway) -> None:
    """12 calls on new connections reach both workers (all 12 on one: 1 in 2,048): with
    limits counted per worker more than ``RPM`` would pass."""
    codes = [call(gateway, f"limited {index}", key="limited").status_code for index in range(12)]
    assert codes == [200] * RPM + [429] * (12 - RPM)


def test_a_config_reload_reaches_every_worker(gateway: Gateway, fake: FakeUpstream) -> None:
    path = gateway.home / "enclave.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["upstreams"][0]["aliases"] = {"renamed": MODEL}
    path.write_text(yaml.safe_dump(settings))
    before = audited(gateway, "config.reload.applied")
    gateway.running.process.send_signal(signal.SIGHUP)  # to the parent, which passes it on
    until(lambda: audited(gateway, "config.reload.applied") == before + 2, "two reloads", gateway)


def test_a_killed_worker_is_restarted(gateway: Gateway) -> None:
    before = workers(gateway)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    until(lambda: len(workers(gateway) - before) == 1, "a new worker", gateway)
    assert victim not in workers(gateway)
    for index in range(CALLS // 2):  # the new one's socket is the old one's: none refused
        assert call(gateway, f"after {index}").status_code == 200


def test_sigterm_stops_every_worker_cleanly(gateway: Gateway) -> None:
    pids = workers(gateway)
    process = gateway.running.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT_S) == 0, gateway.log()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert "all workers stopped" in gateway.log()


def test_workers_without_shared_limits_are_refused(tmp_path: Path, fake: FakeUpstream) -> None:
    path = tmp_path / "enclave.yaml"
    path.write_text(yaml.safe_dump({**config(fake), "auth": {"mode": "on"}}))
    env = {**os.environ, "ENCLAVE_HOME": str(tmp_path)}
    cmd = [ENCLAVE, "--config", str(path), "serve", "--workers", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert_one_line_error(
        done,
        "enclave: --workers 2 with authentication on needs auth.rate_limits: redis (with "
        "memory, each worker would allow a key its whole limit)",
        code=1,
    )


def test_a_port_taken_by_another_server_is_one_line(tmp_path: Path, fake: FakeUpstream) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no group to join
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "enclave.yaml"
        path.write_text(yaml.safe_dump({**config(fake), "port": port}))
        env = {**os.environ, "ENCLAVE_HOME": str(tmp_path)}
        cmd = [ENCLAVE, "--config", str(path), "serve", "--workers", "2"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    line = f"enclave: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert_one_line_error(done, line, code=1)


def test_an_attached_supervisor_follows_anothers_child(fake: FakeUpstream) -> None:
    """A worker's engine: no child of its own, ready once the parent's answers."""

    async def attach() -> None:
        supervisor = EngineSupervisor([], fake.root)
        supervisor.start()
        try:
            deadline = time.monotonic() + WAIT_S
            while supervisor.state().state != "ready":
                assert time.monotonic() < deadline, supervisor.state()
                await asyncio.sleep(0.05)
            assert supervisor.pid is None
        finally:
            await supervisor.stop()

    asyncio.run(attach())
