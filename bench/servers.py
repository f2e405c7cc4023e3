"""The servers a benchmark starts: each pinned to a CPU, waited for, stopped at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.machine import TASKSET, pin_threads
from tests.fakes.procs import ProcessFailed, free_port, stop_process, wait_http

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MODEL = "fake-model"
PROMPT = "hello"


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def serve(
    name: str,
    cmd: list[str],
    *,
    port: int,
    health: str,
    env: dict[str, str],
    cpu: int | None,
    logs: Path,
    timeout: float,
) -> Iterator[Server]:
    """Start ``cmd`` (pinned to ``cpu``) with exactly ``env``; wait for ``health``; stop it."""
    log = logs / f"{name}.log"
    full = [TASKSET, "-c", str(cpu), *cmd] if cpu is not None and TASKSET else cmd
    with log.open("wb") as out:
        process = subprocess.Popen(
            full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        try:
            wait_http(f"http://{HOST}:{port}{health}", timeout, process=process)
        except (TimeoutError, ProcessFailed) as exc:
            raise ProcessFailed(f"{name}: {exc}\n--- {log} ---\n{log_tail(log)}") from None
        if cpu is not None:
            pin_threads(process.pid, {cpu})
        yield Server(name, port, process, log)
    finally:
        stop_process(process)


def fake_command(port: int, tokens: int, itl_ms: int = 0) -> list[str]:
    module = [sys.executable, "-m", "tests.fakes.fake_upstream", "--port", str(port)]
    return [*module, "--models", MODEL, "--tokens", str(tokens), "--itl-ms", str(itl_ms)]


def own_env(**extra: str) -> dict[str, str]:
    """The caller's environment without ENCLAVE_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    return {**env, **extra}


@contextmanager
def run_fake(name: str, tokens: int, itl_ms: int, cpu: int | None, logs: Path) -> Iterator[Server]:
    port = free_port()
    with serve(
        name,
        fake_command(port, tokens, itl_ms),
        port=port,
        health="/health",
        env=own_env(PYTHONPATH=str(REPO_ROOT)),
        cpu=cpu,
        logs=logs,
        timeout=30,
    ) as server:
        yield server
