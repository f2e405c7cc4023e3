"""Helpers shared by several test files: a clean environment for subprocesses, the real
``ask`` executable run against a server, the one-line error it must end in, the fake
upstream a module asks for, and the marker a test directory gives every test in it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import ASK

MODEL = "fake-model"  # the fake upstream's default model
NO_CONFIG = "/nonexistent/ask.toml"  # a developer's own ask.toml must not change a test

# Variables of the developer's shell that would change what a subprocess does: ours
# (ENCLAVE_*), proxies (httpx would route loopback calls through them) and the display
# (``ask --clip`` would read the developer's clipboard).
DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY")


def clean_environ() -> dict[str, str]:
    """``os.environ`` without ENCLAVE_* variables, proxies and the display."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ENCLAVE_")
        and "proxy" not in name.lower()
        and name not in DISPLAY_VARIABLES
    }


def run_ask(
    *args: str,
    url: str | None = None,
    config: Path | None = None,
    stdin: str | bytes = "",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """The real ``ask ARGS`` in a clean environment (:func:`clean_environ`).

    ``url``: ENCLAVE_URL, with ENCLAVE_MODEL the fake's model; ``config``: ASK_CONFIG
    (else no config file at all); ``env`` is added last. ASK_HISTORY is the test's own
    (``tests/live/conftest.py``). Output is decoded as UTF-8, line ends untouched.
    """
    full_env = clean_environ()
    if url is not None:
        full_env |= {"ENCLAVE_URL": url, "ENCLAVE_MODEL": MODEL}
    full_env["ASK_CONFIG"] = str(config) if config is not None else NO_CONFIG
    done = subprocess.run(
        [ASK, *args],
        check=False,
        input=stdin if isinstance(stdin, bytes) else stdin.encode(),
        capture_output=True,
        env=full_env | env,
        timeout=30,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], line: str, code: int = 2, *, stdout: str = ""
) -> None:
    """The command failed with exit status ``code`` (2: a usage error), wrote exactly
    ``line`` on stderr and ``stdout`` (by default nothing) on stdout, and no traceback."""
    assert result.returncode == code, result.stderr
    assert result.stderr == line + "\n"
    assert result.stdout == stdout
    assert "Traceback" not in result.stdout + result.stderr


def mark_directory(items: list[pytest.Item], directory: Path, marker: pytest.MarkDecorator) -> None:
    """Give ``marker`` to every collected test below ``directory``, so a new file there
    cannot forget it (``-m`` selects on it as on a hand-written ``pytestmark``).

    A conftest's ``pytest_collection_modifyitems`` sees every item of the session, not
    only its directory's: hence the path test."""
    for item in items:
        if item.path.is_relative_to(directory):
            item.add_marker(marker)


@contextmanager
def fake_upstream_for(node: pytest.Item | pytest.Collector) -> Iterator[FakeUpstream]:
    """The fake upstream with the options of ``node``'s ``fake_upstream`` marker."""
    marker = node.get_closest_marker("fake_upstream")
    with run_fake_upstream(**(marker.kwargs if marker else {})) as upstream:
        yield upstream


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def socket_server(handler: Handler) -> AsyncIterator[int]:
    """A tiny HTTP server on a loopback port (yielded) whose every connection ``handler``
    answers by hand: for the HTTP/1.1 clients' tests."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        for writer in writers:
            writer.close()
        await listener.wait_closed()
        await asyncio.sleep(0.01)  # let the transports finish closing


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and Content-Length body, as the client sent it."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    sizes = [int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")]
    return head + await reader.readexactly(sizes[0] if sizes else 0)


T = TypeVar("T")


@dataclass
class Load(Generic[T]):
    """Threads making calls until stopped: each call's result, and every failure."""

    call: Callable[[], T]
    results: list[T] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> int:
        return len(self.results)

    def worker(self) -> None:
        while not self.stop.is_set():
            try:
                self.results.append(self.call())
            except Exception as exc:
                self.errors.append(exc)

    def wait(self, check: Callable[[T], bool], count: int = 10, timeout: float = 60) -> None:
        """Until ``count`` calls in a row, from now on, passed ``check`` (bounded: a
        loaded CI machine is slow, so the bound is generous)."""
        deadline = time.monotonic() + timeout
        start = len(self.results)
        while True:
            recent = self.results[start:]
            run = next((i for i, r in enumerate(reversed(recent)) if not check(r)), len(recent))
            if run >= count:
                return
            assert time.monotonic() < deadline, f"never got there: {recent[-count:]}"
            time.sleep(0.02)


@contextmanager
def load(call: Callable[[], T], threads: int = 4) -> Iterator[Load[T]]:
    """``threads`` threads making ``call`` until the block ends."""
    running = Load(call)
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(running.worker)
        try:
            yield running
        finally:
            running.stop.set()
