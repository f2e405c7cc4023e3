"""bench/loadgen.py's connections (on enclave.http1) against tiny real servers on loopback."""

from __future__ import annotations

import asyncio

import pytest

from bench import loadgen
from enclave.http1 import Origin, message
from tests.helpers import read_request
from tests.helpers import socket_server as server

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = b'{"choices":[{"message":{"content":"one two three"}}]}'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def delta(text: str) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + text.encode() + b'"}}]}\n\n'


def request(port: int, *, stream: bool, tokens: int) -> loadgen.Request:
    body = {**BODY, "stream": stream}
    return loadgen.Request.chat("127.0.0.1", port, body, expect_tokens=tokens)


async def exchange(port: int, req: loadgen.Request, count: int = 1) -> list[loadgen.Result]:
    run = loadgen.Run()
    pool = loadgen.Pool("127.0.0.1", port, run)
    try:
        return [await pool.exchange(req) for _ in range(count)]
    finally:
        pool.close()


@pytest.mark.anyio
async def test_a_stream_is_counted_and_timed_by_content_event() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(chunk(b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunk(delta("a") + delta("b")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with server(handler) as port:
        [result] = await exchange(port, request(port, stream=True, tokens=2))
    assert result.ok, result.error
    assert (result.status, result.tokens, result.done) == (200, 2, True)
    assert result.ttft is not None
    assert 0.04 < result.ttft <= result.latency


@pytest.mark.anyio
async def test_a_kept_alive_connection_carries_the_next_request() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(COMPLETION))
            writer.write(COMPLETION)
            await writer.drain()

    async with server(handler) as port:
        results = await exchange(port, request(port, stream=False, tokens=3), count=3)
    assert [(r.ok, r.tokens) for r in results] == [(True, 3)] * 3
    assert connections == 1


@pytest.mark.anyio
async def test_a_body_read_to_the_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + COMPLETION)
        await writer.drain()
        writer.close()

    async with server(handler) as port:
        results = await exchange(port, request(port, stream=False, tokens=3), count=2)
    assert [(r.ok, r.tokens) for r in results] == [(True, 3)] * 2


@pytest.mark.anyio
async def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(COMPLETION))
        writer.write(COMPLETION)
        await writer.drain()
        writer.close()  # without saying Connection: close, as idle timeouts do

    async with server(handler) as port:
        req = request(port, stream=False, tokens=3)
        run = loadgen.Run()
        pool = loadgen.Pool("127.0.0.1", port, run)
        results = []
        for pause in (0.0, 0.05, 0.0):  # the close seen before the next request, or not
            results.append(await pool.exchange(req))
            await asyncio.sleep(pause)
        pool.close()
    assert [(r.ok, r.tokens) for r in results] == [(True, 3)] * 3
    assert run.connections == 3


@pytest.mark.anyio
async def test_bad_answers_are_results_not_exceptions() -> None:
    answers = iter([
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
    ])  # fmt: skip

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(next(answers))
        await writer.drain()
        writer.close()

    async with server(handler) as port:
        req = request(port, stream=False, tokens=3)
        results = [(await exchange(port, req))[0] for _ in range(3)]
    assert [r.status for r in results] == [503, 0, 200]
    assert results[0].error == "HTTP 503: busy"
    assert "not valid HTTP" in (results[1].error or "")
    assert "closed before the response ended" in (results[2].error or "")


def test_the_request_bytes() -> None:
    origin = Origin.parse("https://user@example.com:8443/v1/")
    assert (origin.host, origin.port, origin.prefix, origin.authority) == (
        "example.com", 8443, "/v1", "example.com:8443",
    )  # fmt: skip
    head = origin.head(user_agent="t", headers={"Authorization": "Bearer k"})
    raw = message("POST", "/v1/x", head, b"{}")
    assert raw.startswith(b"POST /v1/x HTTP/1.1\r\nHost: example.com:8443\r\n")
    assert b"Authorization: Bearer k\r\n" in raw
    assert raw.endswith(b"Content-Length: 2\r\n\r\n{}")
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://example.com")
