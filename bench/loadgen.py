"""A small HTTP/1.1 load generator, cheap enough not to be the bottleneck.

httpx costs a few hundred microseconds of CPU per request, which at thousands of requests
per second would make the client, not the server under test, the limit. This module
sends pre-built request bytes over kept-alive connections of :mod:`enclave.http1` (the
one connection layer: asyncio protocol, httptools parser, pool) and reads just enough of
the response, in the parser's callbacks, to time it and check it:

- the status, then a ``Content-Length`` body, a chunked body or (with ``Connection:
  close`` and no length) everything until the server closes;
- for ``text/event-stream`` bodies, the SSE events as they arrive
  (:class:`enclave.sse.Decoder`): the time of the first event with non-empty
  ``content`` (time to first token), how many such events came, whether
  ``data: [DONE]`` ended the stream and whether an error event came instead.

Three ways to drive a server:

- :func:`open_loop`: a fixed request rate (fixed inter-arrival, not paced by responses),
  a new connection whenever no idle one is free, so a slow server cannot slow the sender;
- :func:`closed_loop`: N connections, each sending its next request as soon as the last
  one ended (maximum throughput);
- :func:`burst`: N connections opened first, then N requests sent at once (held streams).

Latency is measured from the moment the request bytes are handed to the socket to the
arrival of the response's last bytes, with ``time.perf_counter``. Only 127.0.0.1 is ever
contacted.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httptools

from enclave import http1
from enclave.sse import DONE_DATA, Decoder

CONTENT = re.compile(r'"content"\s*:\s*"[^"]')  # a delta with non-empty text
ERROR_EVENT = re.compile(r'^\{\s*"error"')


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
        head = http1.Origin.plain(host, port).head(user_agent="enclave-loadgen", headers=headers)
        payload = http1.message("POST", path, head, raw)
        return cls(host, port, payload, bool(body.get("stream")), expect_tokens)


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


class SseScan:
    """Counts SSE events with content as bytes arrive; notes ``[DONE]`` and error events."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.decoder = Decoder()

    def feed(self, data: bytes, now: float) -> None:
        for event in self.decoder.feed(data):
            self.event(event.data, now)

    def event(self, data: str, now: float) -> None:
        if self.result.done:
            self.result.error = "event after [DONE]"
        elif data == DONE_DATA:
            self.result.done = True
        elif ERROR_EVENT.match(data):
            self.result.error = "error event: " + data[:200]
        elif CONTENT.search(data):
            self.result.tokens += 1
            if self.result.first is None:
                self.result.first = now


class Connection(http1.Connection):
    """One kept-alive connection; times and checks one response at a time in callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.result = Result(sent=0.0)
        self.waiter: asyncio.Future[None] | None = None
        self.now = 0.0  # when the bytes being parsed arrived
        self.scan: SseScan | None = None
        self.body = bytearray()
        self.framed = False  # Content-Length or chunked: the end is not the close

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return await http1.Origin.plain(host, port).connect(cls)

    @property
    def answered(self) -> bool:
        return self.result.status != 0

    async def exchange(self, request: Request) -> Result:
        """Send ``request`` and read its whole answer; never raises for a bad answer."""
        result = self.result = Result(sent=time.perf_counter())
        self.scan, self.body, self.framed, self.keep_alive = None, bytearray(), False, False
        self.waiter = self.loop.create_future()
        self.send(request.payload)
        try:
            await self.waiter
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self.waiter = None
        result.end = result.end or time.perf_counter()
        if result.error is None:
            check(request, result)
        return result

    # --- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        self.parse(data)

    def invalid(self, exc: httptools.HttpParserError) -> None:
        self.finish(f"not valid HTTP: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        if self.waiter is None:
            return
        self.now = time.perf_counter()
        if self.answered and not self.framed:  # its body ends where the connection does
            self.on_message_complete()
        else:
            reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
            self.finish(f"the connection closed before the response ended ({reason})")

    # --- httptools callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type" and b"event-stream" in value:
            self.scan = SseScan(self.result)
        elif name in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.result.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.scan is not None:
            self.scan.feed(body, self.now)
            return
        if self.result.first is None:
            self.result.first = self.now
        self.body.extend(body)

    def on_message_complete(self) -> None:
        self.message_done()
        result = self.result
        result.end = self.now
        if result.status != 200:
            result.error = f"HTTP {result.status}: {self.body[:200].decode(errors='replace')}"
        elif self.scan is None:
            result.tokens = content_words(bytes(self.body))
        self.finish(None)

    def finish(self, error: str | None) -> None:
        """The answer ended; ``error`` says why it broke off (the connection closes)."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            self.result.error = error
            self.result.end = self.now
            self.close()
        waiter.set_result(None)


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
        self.run = run
        origin = http1.Origin.plain(host, port)
        self.pool: http1.ConnectionPool[Connection] = http1.ConnectionPool(
            origin, Connection, fifo=True
        )

    async def take(self) -> Connection:
        conn = self.pool.idle()
        if conn is not None:
            return conn
        self.run.connections += 1
        return await self.pool.connect()

    def give(self, conn: Connection) -> None:
        self.pool.release(conn)

    def close(self) -> None:
        self.pool.close()

    async def exchange(self, request: Request) -> Result:
        """One request; a kept-alive connection the server had closed is retried fresh."""
        conn = await self.take()
        result = await conn.exchange(request)
        if conn.reused and not conn.answered:  # closed before any answer: not the server's
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
