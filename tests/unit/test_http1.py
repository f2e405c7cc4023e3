"""The HTTP/1.1 client (enclave.http1) against tiny real servers on loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from enclave.errors import UpstreamError
from enclave.http1 import Client
from tests.helpers import Handler, read_request, socket_server


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    async with socket_server(handler) as port:
        yield f"http://127.0.0.1:{port}/v1"


def pool(url: str) -> Client:
    return Client(url, api_key="k", connect_timeout=2, keepalive_s=60)


@pytest.mark.anyio
async def test_a_json_request_and_a_content_length_answer() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"ok": true}')
        await writer.drain()

    async with server(handler) as url:
        response = await pool(url).request("POST", "chat/completions", {"q": "你好"})
        assert (response.status_code, await response.read()) == (200, b'{"ok": true}')
    request = seen[0].decode()
    assert request.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "Authorization: Bearer k\r\n" in request
    assert request.endswith('{"q":"你好"}')


@pytest.mark.anyio
async def test_chunks_arrive_as_they_are_sent() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go_on.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    async with server(handler) as url:
        response = await pool(url).request("GET", "models")
        chunks = response.iter_chunks()
        assert await anext(chunks) == b"first"  # before the server sent the rest
        go_on.set()
        assert [chunk async for chunk in chunks] == [b"second"]


@pytest.mark.anyio
async def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # without saying Connection: close, as idle timeouts do

    async with server(handler) as url:
        upstream = pool(url)
        for _ in range(3):
            response = await upstream.request("GET", "models")
            assert await response.read() == b"ok"
            await asyncio.sleep(0.05)  # let the close arrive... or not: both must work
    assert connections == 3


@pytest.mark.anyio
async def test_a_connection_that_breaks_mid_answer_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async with server(handler) as url:
        response = await pool(url).request("GET", "models")
        with pytest.raises(UpstreamError, match="closed the connection"):
            await response.read()


@pytest.mark.anyio
async def test_garbage_instead_of_http_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with server(handler) as url:
        with pytest.raises(UpstreamError, match="not valid HTTP"):
            await pool(url).request("GET", "models")


@pytest.mark.anyio
async def test_nothing_listening_names_the_url() -> None:
    async with server(read_request) as url:  # type: ignore[arg-type]
        pass  # closed again: the port is free now
    with pytest.raises(UpstreamError, match=rf"cannot connect to {url}"):
        await pool(url).request("GET", "models")


def test_only_http_urls() -> None:
    with pytest.raises(UpstreamError, match="must be http"):
        pool("ftp://example/v1")


@pytest.mark.anyio
async def test_a_kept_alive_connection_is_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with server(handler) as url:
        upstream = pool(url)
        for _ in range(3):
            response = await upstream.request("GET", "models")
            assert await response.read() == b"ok"
        await upstream.aclose()
    assert connections == 1
