"""``enclave serve --workers 2`` with the real engine: one llama.cpp child for the host,
run by the parent, and both workers answer from it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.engine.conftest import prepare
from tests.engine.test_engine_serve import CONFIG, TINY
from tests.gateway import Gateway, run_gateway

CALLS = 8  # each on a new connection: the kernel spreads them over the workers
WAIT_S = 120.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("engine-workers")
    prepare(home, TINY)
    config = {"engine": {**CONFIG["engine"], "ocr": False}}
    with run_gateway(home, config, args=("--workers", "2"), timeout=WAIT_S) as running:
        yield running


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def ready_everywhere(gateway: Gateway) -> None:
    """``CALLS`` new connections in a row see the engine ready (each worker follows the
    parent's child on its own, so the second may see it a probe later)."""
    deadline, ready = time.monotonic() + WAIT_S, 0
    while ready < CALLS:
        assert time.monotonic() < deadline, gateway.log()
        ok = httpx.get(gateway.url + "/health", timeout=10).status_code == 200
        ready = ready + 1 if ok else 0


def test_one_engine_child_serves_every_worker(gateway: Gateway) -> None:
    parent = gateway.running.process.pid
    kids = children(parent)
    engines = [pid for pid in kids if "enclave.engine.child" in command(pid)]
    assert len(engines) == 1, [command(pid) for pid in kids]
    assert len(kids) == 3  # the engine child and two workers
    workers = set(kids) - set(engines)
    assert not any(children(worker) for worker in workers)  # no engine of their own
    ready_everywhere(gateway)
    body = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    for _ in range(CALLS):  # whichever worker answers, the engine is ready there
        response = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
