"""A real ``redis-server`` for tests: a free loopback port, a temporary directory, no
persistence; stopped (and its files removed) on exit.

``./task test`` installs ``redis-server`` when it is missing (Debian, as root); where it
is absent all the same, the tests that need it skip (see :func:`redis_server_path`).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.fakes.procs import HOST, ProcessFailed, RunningProcess, free_port, run_process

INSTALL_HINT = (
    "redis-server is not installed: run ./task test as root, or apt-get install redis-server"
)


@dataclass
class RedisServer:
    port: int
    running: RunningProcess

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers ``PING`` on the port (RESP inline command)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def run_redis(timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start ``redis-server`` on a free port; :class:`ProcessFailed` if it does not answer."""
    binary = redis_server_path()
    if binary is None:
        raise ProcessFailed(INSTALL_HINT)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="enclave-redis-") as workdir:
        cmd = [binary, "--port", str(port), "--bind", HOST, "--dir", workdir]
        cmd += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        with run_process(cmd) as running:
            _await_ping(running, port, timeout)
            yield RedisServer(port, running)


def _await_ping(running: RunningProcess, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ping(port):
        if running.process.poll() is not None or time.monotonic() > deadline:
            raise ProcessFailed(f"redis-server did not start on port {port}:\n{running.log_tail()}")
        time.sleep(0.02)
