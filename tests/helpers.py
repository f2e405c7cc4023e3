"""Helpers shared by several test files: a clean environment for subprocesses, the real
``ask`` executable run against a server, the one-line error it must end in, the fake
upstream a module asks for, and the marker a test directory gives every test in it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

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
