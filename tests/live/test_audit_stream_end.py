"""Strict audit and streams: a client's stream ends at ``data: [DONE]`` (the openai SDK
stops reading there), so that event must wait for the call's audit record to commit, or
a replica killed between the two loses the record of a call its client saw complete.

The test holds SQLite's write lock from outside the gateway: the record cannot commit, so
``[DONE]`` must not arrive; once the lock is released it does, and the record is there.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway

MODEL = "fake-model"
HELD_S = 2.0  # how long the lock is held; the gateway waits up to 30 s (busy_timeout)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "f", "base_url": fake.base_url, "models": [MODEL]}],
    }
    with run_gateway(tmp_path_factory.mktemp("streamend"), config) as gw:
        yield gw


def records(home: Path, request_id: str) -> int:
    with sqlite3.connect(home / "enclave.db") as db:
        row = db.execute("SELECT count(*) FROM audit WHERE request_id = ?", (request_id,))
        return int(row.fetchone()[0])


def test_done_waits_for_the_streams_audit_record(gateway: Gateway) -> None:
    finished = threading.Event()  # the finish_reason chunk has arrived
    seen: list[bytes] = []

    def read() -> None:
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-request-id": "req-stream-end"}
        with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body,
                          headers=headers, timeout=60, trust_env=False) as response:  # fmt: skip
            for line in response.iter_lines():
                if '"finish_reason":"stop"' in line.replace(" ", ""):
                    finished.set()
                if line:
                    seen.append(line.encode())

    lock = sqlite3.connect(gateway.home / "enclave.db", isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")  # the write lock: no audit record can commit now
    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert finished.wait(30), "the stream's last chunk never came"
        reader.join(HELD_S)  # a bounded look: [DONE] must not come while the lock is held
        assert b"data: [DONE]" not in seen, "the stream ended before its audit record committed"
    finally:
        lock.execute("COMMIT")
        lock.close()
    reader.join(30)
    assert not reader.is_alive()
    assert seen[-1] == b"data: [DONE]"
    assert records(gateway.home, "req-stream-end") == 1
