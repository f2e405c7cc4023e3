"""Debian's nginx as a real process for tests: a load balancer on a free loopback port in
front of several gateway replicas.

The configuration is the shipped one, deploy/compose/nginx.conf (docs/deploy.md,
"nginx"), so the tests exercise the file a deployment runs: only the upstream server
lines, the listen address, the worker count and the pid, log and temporary paths are
replaced (see :func:`config_text`). Each reply also carries ``X-Replica`` (nginx's
``$upstream_addr``: which replica answered), so a test can tell where a call went.
Everything (config, pid, logs, temporary files) lives in a temporary directory; nginx
runs in the foreground (``daemon off``) as a child of the test, and never as a system
service.

``./task test`` installs nginx (Debian ``nginx-light``); where it is absent all the
same, the tests that need it skip (see :func:`nginx_path`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.procs import HOST, ProcessFailed, free_port, stop_process

INSTALL_HINT = "nginx is not installed: run ./task test as root, or apt-get install nginx-light"
REPLICA_HEADER = "x-replica"

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^ *server enclave-\d+:8000 [^\n]*\n", re.MULTILINE)


def _swap(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced: a shipped file that no longer has it fails
    loudly rather than leaving the test on a different configuration."""
    if text.count(old) != 1:
        raise AssertionError(f"{SHIPPED} no longer has exactly one {old!r}")
    return text.replace(old, new)


def nginx_path() -> str | None:
    # /usr/sbin is not on every user's PATH
    candidates = ("/usr/sbin/nginx", "/sbin/nginx")
    return shutil.which("nginx") or next((p for p in candidates if os.access(p, os.X_OK)), None)


def config_text(base: Path, port: int, replicas: Sequence[str], workers: int | str = 1) -> str:
    """deploy/compose/nginx.conf for ``replicas`` (``host:port`` each) behind ``HOST:port``:
    only the upstream servers, the listen address, the worker count and the pid, log and
    temporary paths differ, and every reply carries ``X-Replica``."""
    text = SHIPPED.read_text()
    servers = "".join(f"        server {addr} max_fails=1 fail_timeout=5s;\n" for addr in replicas)
    first = UPSTREAM_SERVER.search(text)
    if first is None:
        raise AssertionError(f"{SHIPPED} has no upstream server line")
    text = text[: first.start()] + servers + UPSTREAM_SERVER.sub("", text[first.start() :])
    # As root, nginx's workers would switch to "nobody" and not reach the temp files.
    user = "user root;\n" if os.geteuid() == 0 else ""
    head = f"{user}worker_processes {workers};\npid {base}/nginx.pid;"
    text = _swap(text, "worker_processes auto;", head)
    text = _swap(text, "error_log /dev/stderr warn;", f"error_log {base}/error.log warn;")
    temp = "".join(
        f"\n    {kind}_temp_path {base}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _swap(
        text, "access_log /dev/stdout enclave;", f"access_log {base}/access.log enclave;{temp}"
    )
    replica = "\n        add_header X-Replica $upstream_addr always;  # which replica answered"
    return _swap(text, "listen 80;", f"listen {HOST}:{port};{replica}")


@dataclass
class Nginx:
    base: Path
    port: int
    replicas: list[str]
    process: subprocess.Popen[bytes]
    workers: int | str = 1

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def conf(self) -> Path:
        return self.base / "nginx.conf"

    def error_log(self) -> str:
        try:
            return (self.base / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def reload(self, replicas: Sequence[str]) -> None:
        """Point at ``replicas`` instead: rewrite the config, check it, SIGHUP."""
        self.replicas = list(replicas)
        self.conf.write_text(config_text(self.base, self.port, self.replicas, self.workers))
        _check(self.conf)
        self.process.send_signal(signal.SIGHUP)


def _check(conf: Path) -> None:
    binary = nginx_path()
    assert binary is not None
    done = subprocess.run(
        [binary, "-t", "-q", "-c", str(conf), "-p", str(conf.parent), "-e", "stderr"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        raise ProcessFailed(f"nginx -t refused {conf}: {done.stderr.strip()}")


@contextmanager
def run_nginx(
    replicas: Sequence[str], timeout: float = 15.0, *, workers: int | str = 1
) -> Iterator[Nginx]:
    """nginx on a free loopback port in front of ``replicas`` (``workers``: its
    ``worker_processes``, a number or ``auto``); stopped on exit."""
    binary = nginx_path()
    if binary is None:
        raise ProcessFailed(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="enclave-nginx-") as folder:
        base = Path(folder)
        (base / "tmp").mkdir()
        port = free_port()
        conf = base / "nginx.conf"
        conf.write_text(config_text(base, port, replicas, workers))
        _check(conf)
        cmd = [binary, "-c", str(conf), "-p", str(base), "-e", "stderr", "-g", "daemon off;"]
        with (base / "stderr.log").open("wb") as log:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        running = Nginx(base, port, list(replicas), process, workers)
        try:
            _await_port(running, timeout)
            yield running
        finally:
            stop_process(process)  # SIGTERM: nginx's fast shutdown


def _await_port(running: Nginx, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if running.process.poll() is not None:
            text = (running.base / "stderr.log").read_text(errors="replace")
            raise ProcessFailed(f"nginx exited with {running.process.returncode}: {text}")
        try:
            socket.create_connection((HOST, running.port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ProcessFailed(f"nginx did not listen on {running.port}") from None
            time.sleep(0.02)
