"""Real processes for tests: free loopback ports, health polling, clean shutdown.

``run_process`` starts any server (the lead uses it for ``enclave serve``);
``run_fake_upstream`` starts ``tests.fakes.fake_upstream`` with it.
Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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


@dataclass
class FakeUpstream:
    base_url: str  # http://127.0.0.1:P/v1
    port: int
    process: subprocess.Popen[bytes]

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``: requests, completed, cancelled, last_request..."""
        response = httpx.get(f"{self.root}/_fake/stats", trust_env=False)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset(self) -> None:
        httpx.post(f"{self.root}/_fake/reset", trust_env=False).raise_for_status()


def fake_upstream_args(
    port: int,
    *,
    models: Sequence[str] = ("fake-model",),
    vision: bool = False,
    ttft_ms: int = 0,
    itl_ms: int = 0,
    tokens: int = 16,
    context_length: int = 4096,
    api_key: str | None = None,
    fail_status: int | None = None,
    error_after: int | None = None,
) -> list[str]:
    """The command line that starts the fake upstream with these options."""
    args = [sys.executable, "-m", "tests.fakes.fake_upstream", "--port", str(port)]
    args += ["--models", ",".join(models), "--tokens", str(tokens)]
    args += ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
    args += ["--context-length", str(context_length)]
    args += ["--vision"] if vision else []
    args += ["--api-key", api_key] if api_key is not None else []
    args += ["--fail-status", str(fail_status)] if fail_status is not None else []
    args += ["--error-after", str(error_after)] if error_after is not None else []
    return args


@contextmanager
def run_fake_upstream(
    *, port: int | None = None, timeout: float = 15.0, **options: Any
) -> Iterator[FakeUpstream]:
    """Start the fake upstream as a subprocess; ``options`` are ``fake_upstream_args``'s."""
    port = port or free_port()
    cmd = fake_upstream_args(port, **options)
    with run_process(cmd, health_url=f"http://{HOST}:{port}/health", timeout=timeout) as running:
        yield FakeUpstream(f"http://{HOST}:{port}/v1", port, running.process)
