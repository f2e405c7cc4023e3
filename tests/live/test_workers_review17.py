"""Review of issue 17's ``enclave serve --workers N``: a SIGHUP (a reload, or logrotate's)
that reaches a worker while it starts, before its app listens for SIGHUP, must not end
it (the default action of SIGHUP is to terminate the process), and is applied once the
worker can; and a worker restarted after a reload serves the reloaded config."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import yaml

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway
from tests.live.test_workers import MODEL, WAIT_S, config


def until_logged(gateway: Gateway, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + WAIT_S
    while gateway.log().count(text) < count:
        assert time.monotonic() < deadline, (
            f"{text!r} x{count}, not within {WAIT_S}s:\n{gateway.log()}"
        )
        time.sleep(0.02)


def test_a_sighup_while_workers_start_ends_none(tmp_path: Path, fake: FakeUpstream) -> None:
    with run_gateway(tmp_path / "home", config(fake), args=("--workers", "2"), health=None) as gw:
        until_logged(gw, "worker 1 started")  # both spawned, neither can have an app yet
        gw.running.process.send_signal(signal.SIGHUP)  # passed on to both
        until_logged(gw, "Application startup complete", 2)
        until_logged(gw, "config reloaded (SIGHUP)", 2)  # held until each could, not lost
        assert httpx.get(gw.url + "/health", timeout=30).status_code in (200, 503)
        assert "exited with code" not in gw.log(), gw.log()


def test_a_restarted_worker_serves_the_reloaded_config(tmp_path: Path, fake: FakeUpstream) -> None:
    """A worker that died after a reload comes back with the config the others run, not
    with the one the pool started with."""
    settings = {**config(fake), "watch_config": False}  # reloads by SIGHUP only: counted
    with run_gateway(tmp_path / "home", settings, args=("--workers", "2")) as gw:
        until_logged(gw, "Application startup complete", 2)
        path = gw.home / "enclave.yaml"
        changed = yaml.safe_load(path.read_text())
        changed["upstreams"][0]["aliases"] = {"renamed": MODEL}
        path.write_text(yaml.safe_dump(changed))
        gw.running.process.send_signal(signal.SIGHUP)
        until_logged(gw, "config reloaded (SIGHUP)", 2)
        pid = gw.running.process.pid
        victim = min(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        os.kill(victim, signal.SIGKILL)
        until_logged(gw, "Application startup complete", 3)
        body = {"model": "renamed", "messages": [{"role": "user", "content": "hi"}]}
        codes = [  # each on a new connection: both workers answer some (all on one: 1 in 4,096)
            httpx.post(gw.v1 + "/chat/completions", json=body, timeout=30).status_code
            for _ in range(12)
        ]
        assert codes == [200] * 12, gw.log()
