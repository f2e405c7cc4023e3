"""Review of issue 17's ``enclave serve --workers N``: a SIGHUP (a reload, or logrotate's)
that reaches a worker while it starts, before its app listens for SIGHUP, must not end
it (the default action of SIGHUP is to terminate the process), and is applied once the
worker can."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway
from tests.live.test_workers import WAIT_S, config


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
