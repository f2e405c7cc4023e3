"""Real processes for tests: free loopback ports, health polling, clean shutdown.

``run_process`` starts any server (the lead uses it for ``enclave serve``);
``run_fake_upstream`` starts ``tests.fakes.fake_upstream`` with it and gives a
:class:`FakeUpstream` handle: stats, run-time configuration, kill and restart.
Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class ProcessFailed(RuntimeError):
    """A process did not become healthy; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str, timeout: float = 15.0, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; stop early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise ProcessFailed(f"process exited with {process.returncode} before {url} was up")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def run_process(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    health_url: str | None = None,
    timeout: float = 30.0,
    *,
    cwd: Path | None = None,
) -> Iterator[RunningProcess]:
    """Start ``cmd`` (``env`` is added to ``os.environ``), wait for ``health_url``, stop on exit.

    stdout and stderr go to one temporary log file; if the process does not become
    healthy, :class:`ProcessFailed` is raised with the log's tail.
    """
    fd, name = tempfile.mkstemp(prefix="enclave-proc-", suffix=".log")
    log = Path(name)
    try:
        running = RunningProcess(_spawn(cmd, env, cwd, fd), log)
    except OSError:
        log.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    try:
        if health_url is not None:
            _await_health(running, health_url, timeout, cmd)
        yield running
    finally:
        stop_process(running.process)
        running.log.unlink(missing_ok=True)


def _spawn(
    cmd: Sequence[str], env: Mapping[str, str] | None, cwd: Path | None, log_fd: int
) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd or REPO_ROOT,
    )


def _await_health(running: RunningProcess, url: str, timeout: float, cmd: Sequence[str]) -> None:
    try:
        wait_http(url, timeout, process=running.process)
    except (TimeoutError, ProcessFailed) as exc:
        stop_process(running.process)
        command = " ".join(cmd)
        raise ProcessFailed(f"{command}: {exc}\n--- log tail ---\n{running.log_tail()}") from None


class FakeUpstream:
    """A running fake upstream (``tests/fakes/fake_upstream.py`` documents what it does).

    Its process can be killed (:meth:`kill`) and started again on the same port with
    the same command line (:meth:`restart`); ``run_fake_upstream`` stops whatever is
    running at the end.
    """

    def __init__(
        self, port: int, cmd: Sequence[str], stack: ExitStack, timeout: float = 15.0
    ) -> None:
        self.port = port
        self.base_url = f"http://{HOST}:{port}/v1"
        self.cmd = list(cmd)
        self._stack = stack
        self._timeout = timeout
        self._running = self._start()

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self._running.process

    def _start(self) -> RunningProcess:
        # /_fake/stats answers 200 whatever the options (--no-health, --health-status,
        # --hang-health) and is not counted as a health check.
        ready = f"{self.root}/_fake/stats"
        running = run_process(self.cmd, health_url=ready, timeout=self._timeout)
        return self._stack.enter_context(running)

    def kill(self) -> None:
        """SIGKILL the process and reap it: the port refuses connections afterwards."""
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start the same command on the same port again (killing a running one first)."""
        if self.process.poll() is None:
            self.kill()
        self._running = self._start()

    def log_tail(self, lines: int = 40) -> str:
        return self._running.log_tail(lines)

    def _call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = httpx.request(method, f"{self.root}{path}", json=json, trust_env=False)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``: name, requests, completed, cancelled, in_flight..."""
        return self._call("GET", "/_fake/stats")

    def requests(self) -> list[dict[str, Any]]:
        """``GET /_fake/requests``: the last 32 chat bodies, oldest first."""
        found: list[dict[str, Any]] = httpx.get(
            f"{self.root}/_fake/requests", trust_env=False
        ).json()
        return found

    def reset(self) -> None:
        """Zero the counters (not the options)."""
        self._call("POST", "/_fake/reset")

    def configure(self, **options: Any) -> dict[str, Any]:
        """``POST /_fake/config``: change run-time options; returns the effective ones.

        ``fake.configure()`` only reads them. An unknown or fixed option, or a value of
        the wrong type, raises ``httpx.HTTPStatusError`` (400).
        """
        return self._call("POST", "/_fake/config", options)

    def restore(self) -> dict[str, Any]:
        """Run-time options back to their startup values; returns the effective options."""
        return self._call("POST", "/_fake/restore")

    def wait_stats(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Poll the stats until ``check(stats)``; return them, or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if check(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"stats did not match within {timeout} s: {stats}")
            time.sleep(0.02)


def fake_upstream_args(
    port: int,
    *,
    models: Sequence[str] = ("fake-model",),
    vision: bool = False,
    context_length: int = 4096,
    api_key: str | None = None,
    name: str = "fake",
    no_health: bool = False,
    no_stream_usage: bool = False,
    ttft_ms: int = 0,
    itl_ms: int = 0,
    tokens: int = 16,
    fail_status: int | None = None,
    fail_times: int = 0,
    error_after: int | None = None,
    stall_after: int | None = None,
    hang: bool = False,
    hang_health: bool = False,
    health_status: int = 200,
    script: str | None = None,
    stamp: bool = False,
    lenient: bool = False,
) -> list[str]:
    """The command line that starts the fake upstream with these options."""
    args = [sys.executable, "-m", "tests.fakes.fake_upstream", "--port", str(port)]
    args += ["--models", ",".join(models), "--tokens", str(tokens), "--name", name]
    args += ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
    args += ["--context-length", str(context_length), "--health-status", str(health_status)]
    args += ["--fail-times", str(fail_times)]
    flags = {
        "--vision": vision,
        "--no-health": no_health,
        "--no-stream-usage": no_stream_usage,
        "--hang": hang,
        "--hang-health": hang_health,
        "--stamp": stamp,
        "--lenient": lenient,
    }
    args += [flag for flag, on in flags.items() if on]
    valued = {
        "--api-key": api_key,
        "--fail-status": fail_status,
        "--error-after": error_after,
        "--stall-after": stall_after,
        "--script": script,
    }
    for flag, value in valued.items():
        args += [flag, str(value)] if value is not None else []
    return args


@contextmanager
def run_fake_upstream(
    *, port: int | None = None, timeout: float = 15.0, **options: Any
) -> Iterator[FakeUpstream]:
    """Start the fake upstream as a subprocess; ``options`` are ``fake_upstream_args``'s.

    ``port`` may be one a killed fake used: the fake binds with SO_REUSEADDR, so it
    can be taken again at once.
    """
    port = port or free_port()
    cmd = fake_upstream_args(port, **options)
    with ExitStack() as stack:
        yield FakeUpstream(port, cmd, stack, timeout)
