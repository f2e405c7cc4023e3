"""A small HTTP/1.1 load generator on raw asyncio streams, cheap enough not to be the bottleneck.

httpx costs a few hundred microseconds of CPU per request, which at thousands of requests
per second would make the client, not the server under test, the limit. This module
sends pre-built request bytes over kept-alive connections and reads just enough of the
response to time it and check it:

- the status line and headers, then a ``Content-Length`` body, a chunked body or (with
  ``Connection: close``) everything until the server closes;
- for ``text/event-stream`` bodies, the SSE events as they arrive: the time of the first
  event with non-empty ``content`` (time to first token), how many such events came,
  whether ``data: [DONE]`` ended the stream and whether an error event came instead.

Three ways to drive a server:

- :func:`open_loop`: a fixed request rate (fixed inter-arrival, not paced by responses),
  a new connection whenever no idle one is free, so a slow server cannot slow the sender;
- :func:`closed_loop`: N connections, each sending its next request as soon as the last
  one ended (maximum throughput);
- :func:`burst`: N connections opened first, then N requests sent at once (held streams).

Latency is measured from the moment the request bytes are handed to the socket to the end
of the response, with ``time.perf_counter``. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

CONTENT = re.compile(rb'"content"\s*:\s*"[^"]')  # a delta with non-empty text
ERROR_EVENT = re.compile(rb'^data:\s*\{\s*"error"')
READ_LIMIT = 1 << 20


class ProtocolError(Exception):
    """The server's reply could not be read as HTTP/1.1."""


@dataclass(frozen=True)
class Request:
    """One pre-built request and what a correct answer to it looks like."""

    host: str
    port: int
    payload: bytes
    stream: bool
    expect_tokens: int  # content events (streamed) or words of the content (not streamed)

    @classmethod
    def chat(
        cls,
        host: str,
        port: int,
        body: dict[str, Any],
        *,
        expect_tokens: int,
        path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> Request:
        raw = json.dumps(body, separators=(",", ":")).encode()
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: application/json",
            "Accept: */*",
            f"Content-Length: {len(raw)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return cls(host, port, head + raw, bool(body.get("stream")), expect_tokens)


@dataclass
class Result:
    """One request: timings in seconds (perf_counter) and what the answer held."""

    sent: float
    end: float = 0.0
    first: float | None = None  # first content event (streams) or first body byte
    status: int = 0
    tokens: int = 0
    done: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.end - self.sent

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent


@dataclass
class SseScan:
    """Counts SSE events with content as bytes arrive; notes ``[DONE]`` and error events."""

    result: Result
    buffer: bytes = b""

    def feed(self, data: bytes, now: float) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        while (cut := self.buffer.find(b"\n\n")) >= 0:
            event, self.buffer = self.buffer[:cut], self.buffer[cut + 2 :]
            self.event(event, now)

    def event(self, event: bytes, now: float) -> None:
        if self.result.done:
            self.result.error = "event after [DONE]"
        elif event.startswith(b"data: [DONE]") or event.startswith(b"data:[DONE]"):
            self.result.done = True
        elif ERROR_EVENT.match(event):
            self.result.error = "error event: " + event[:200].decode(errors="replace")
        elif CONTENT.search(event):
            self.result.tokens += 1
            if self.result.first is None:
                self.result.first = now


class Connection:
    """One kept-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = 0
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        return cls(reader, writer)

    def close(self) -> None:
        self.reusable = False
        self.writer.close()

    async def exchange(self, request: Request) -> Result:
        """Send ``request`` and read its whole answer; never raises for a bad answer."""
        self.used += 1
        result = Result(sent=time.perf_counter())
        self.writer.write(request.payload)
        try:
            await self._read(request, result)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            self.close()
        except ProtocolError as exc:
            result.error = str(exc)
            self.close()
        except asyncio.CancelledError:
            self.close()
            raise
        result.end = result.end or time.perf_counter()
        if result.error is None:
            check(request, result)
        return result

    async def _read(self, request: Request, result: Result) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = parse_head(head)
        result.status = status
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        scan = SseScan(result) if "event-stream" in headers.get("content-type", "") else None
        body = bytearray()

        def sink(data: bytes) -> None:
            now = time.perf_counter()
            if scan is not None:
                scan.feed(data, now)
            else:
                if result.first is None and data:
                    result.first = now
                body.extend(data)

        await self._read_body(headers, sink)
        result.end = time.perf_counter()
        if status != 200:
            result.error = f"HTTP {status}: {bytes(body[:200]).decode(errors='replace')}"
        elif scan is None:
            result.tokens = content_words(bytes(body))

    async def _read_body(self, headers: dict[str, str], sink: Callable[[bytes], None]) -> None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._read_chunked(sink)
        elif "content-length" in headers:
            sink(await self.reader.readexactly(int(headers["content-length"])))
        else:
            self.reusable = False
            while data := await self.reader.read(65536):
                sink(data)

    async def _read_chunked(self, sink: Callable[[bytes], None]) -> None:
        reader = self.reader
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return
            data = await reader.readexactly(size + 2)
            sink(data[:-2])


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def content_words(body: bytes) -> int:
    """Words in the first choice's message content of a chat completion (-1: none)."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return -1
    return len(content.split()) if isinstance(content, str) else -1


def check(request: Request, result: Result) -> None:
    """Mark a 200 answer that is not what the fake upstream sends as an error."""
    if request.stream and not result.done:
        result.error = "stream ended without data: [DONE]"
    elif result.tokens != request.expect_tokens:
        what = "content events" if request.stream else "words of content"
        result.error = f"{result.tokens} {what}, expected {request.expect_tokens}"


# --- drivers ---------------------------------------------------------------------------


@dataclass
class Run:
    """What a driver measured; ``results`` holds the measured requests only."""

    results: list[Result] = field(default_factory=list)
    warmup: list[Result] = field(default_factory=list)
    started: float = 0.0  # perf_counter at the start of the measured window
    ended: float = 0.0  # perf_counter at its end
    connections: int = 0  # connections opened in all
    lag: list[float] = field(default_factory=list)  # open loop: send time - planned time
    reconnects: int = 0  # kept-alive connections found closed by the server
    send_seconds: float = 0.0  # open loop: how long sending the measured requests took

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


class Pool:
    """Idle connections to one server, used first-in first-out so none sits idle long."""

    def __init__(self, host: str, port: int, run: Run) -> None:
        self.host, self.port, self.run = host, port, run
        self.idle: deque[Connection] = deque()

    async def take(self) -> Connection:
        if self.idle:
            return self.idle.popleft()
        self.run.connections += 1
        return await Connection.open(self.host, self.port)

    def give(self, conn: Connection) -> None:
        if conn.reusable:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()

    async def exchange(self, request: Request) -> Result:
        """One request; a kept-alive connection the server had closed is retried fresh."""
        conn = await self.take()
        result = await conn.exchange(request)
        if result.status == 0 and conn.used > 1:  # closed before any answer: not the server's
            self.run.reconnects += 1
            conn = await self.take()
            result = await conn.exchange(request)
        self.give(conn)
        return result


Probe = Callable[[str], None]  # called with "start" and "end" of the measured window


async def open_loop(
    request: Request,
    rate: float,
    seconds: float,
    warmup: float,
    probe: Probe | None = None,
    *,
    drain: float = 60.0,
) -> Run:
    """``rate`` requests per second for ``warmup`` + ``seconds``, sent on schedule.

    Answers still missing ``drain`` seconds after the last request was sent are given up
    and counted as errors (an overloaded server queues without bound at a fixed rate).
    """
    run = Run()
    pool = Pool(request.host, request.port, run)
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    n_warm = round(warmup * rate)
    n_total = n_warm + round(seconds * rate)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        into = run.results if index >= n_warm else run.warmup
        sent = time.perf_counter()
        try:
            result = await pool.exchange(request)
        except OSError as exc:  # could not even connect
            result = Result(sent=sent, end=time.perf_counter(), error=repr(exc))
        except asyncio.CancelledError:
            into.append(Result(sent=sent, end=time.perf_counter(), error="no answer in time"))
            raise
        into.append(result)

    begin = loop.time() + 0.01
    for index in range(n_total):
        planned = begin + index * interval
        delay = planned - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if index == n_warm:
            run.started = time.perf_counter()
            if probe:
                probe("start")
        if index >= n_warm:
            run.lag.append(loop.time() - planned)
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    run.send_seconds = time.perf_counter() - run.started
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    run.ended = time.perf_counter()
    if probe:
        probe("end")
    pool.close()
    return run


async def closed_loop(
    request: Request,
    concurrency: int,
    seconds: float,
    warmup: float,
    probe: Probe | None = None,
) -> Run:
    """``concurrency`` connections, back to back; counts answers ended inside the window."""
    run = Run()
    start = time.perf_counter()
    run.started, run.ended = start + warmup, start + warmup + seconds

    async def worker() -> None:
        pool = Pool(request.host, request.port, run)
        try:
            while time.perf_counter() < run.ended:
                try:
                    result = await pool.exchange(request)
                except OSError as exc:  # could not connect
                    now = time.perf_counter()
                    result = Result(sent=now, end=now, error=repr(exc))
                if run.started <= result.end <= run.ended:
                    run.results.append(result)
                elif result.end < run.started:
                    run.warmup.append(result)
                if not result.ok:
                    await asyncio.sleep(0.01)  # do not spin on a refusing server
        finally:
            pool.close()

    async def probing() -> None:
        await asyncio.sleep(max(0.0, run.started - time.perf_counter()))
        if probe:
            probe("start")
        await asyncio.sleep(max(0.0, run.ended - time.perf_counter()))
        if probe:
            probe("end")

    await asyncio.gather(probing(), *(worker() for _ in range(concurrency)))
    return run


async def burst(
    request: Request,
    count: int,
    *,
    connect_batch: int = 100,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> Run:
    """Open ``count`` connections, then send ``count`` requests at once and wait for all."""
    run = Run()
    conns: list[Connection] = []
    for offset in range(0, count, connect_batch):
        size = min(connect_batch, count - offset)
        opened = await asyncio.gather(
            *(Connection.open(request.host, request.port) for _ in range(size))
        )
        conns.extend(opened)
    run.connections = len(conns)
    watcher = asyncio.create_task(during()) if during else None
    run.started = time.perf_counter()
    try:
        run.results = list(await asyncio.gather(*(conn.exchange(request) for conn in conns)))
    finally:
        run.ended = time.perf_counter()
        if watcher:
            watcher.cancel()
        for conn in conns:
            conn.close()
    return run


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (less CPU per event), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
