"""What one audit batch costs in trips to the database, counted at real seams:

- PostgreSQL: the writer connects through a TCP relay that counts round trips (each
  time the client speaks again after the server answered): ONE per batch once the
  writer knows the head, and a correct fallback when another writer moved it;
- SQLite: the writer's executor counts the jobs it is given (ONE per batch), and the
  engine's pool sees no checkout (no statement goes through aiosqlite's thread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event

from enclave.audit import AuditWriter, verify_store
from enclave.store.repos import Store, open_store
from tests.storage.test_audit import KEY, entry, seqs, write_many

pytestmark = pytest.mark.anyio


class RoundTrips:
    """A TCP relay to ``port`` counting round trips over all its connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: Any) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.port)
        answered = [True]  # the server spoke last: the client's next bytes start a trip

        async def pump(source: asyncio.StreamReader, sink: Any, from_client: bool) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await source.read(65536):
                    if from_client and answered[0]:
                        self.count += 1
                    answered[0] = not from_client
                    sink.write(data)
                    await sink.drain()
            sink.close()

        for task in (
            asyncio.create_task(pump(client_in, server_out, True)),
            asyncio.create_task(pump(server_in, client_out, False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def relayed(store: Store) -> AsyncIterator[tuple[Store, RoundTrips]]:
    """The same PostgreSQL database as ``store``, reached through a :class:`RoundTrips`."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("round trips over the network: PostgreSQL")
    trips = RoundTrips(int(store.engine.url.port or 5432))
    url = store.engine.url.set(host="127.0.0.1", port=await trips.start())
    other = await open_store(url.render_as_string(hide_password=False), migrate=False)
    try:
        yield other, trips
    finally:
        await other.aclose()
        await trips.aclose()


async def test_postgres_one_round_trip_per_batch(
    store: Store, relayed: tuple[Store, RoundTrips]
) -> None:
    through, trips = relayed
    writer = AuditWriter(through.sessions, KEY, strict=True)
    try:
        await writer.write(entry(1))  # learns the head (the locked path)
        await writer.write(entry(2))  # the one statement, prepared once per connection
        before, batches = trips.count, writer.batches
        for n in range(3, 6):  # one batch each
            await writer.write(entry(n))
        assert (trips.count - before, writer.batches - batches) == (3, 3)
        before, batches = trips.count, writer.batches
        await write_many(writer, 40, start=6)  # concurrent: grouped into batches
        assert trips.count - before == writer.batches - batches
    finally:
        await writer.aclose()
    assert await seqs(store) == list(range(1, 46))
    assert (await verify_store(store.sessions, KEY)).ok


async def test_postgres_falls_back_when_another_writer_moved_the_head(
    store: Store, relayed: tuple[Store, RoundTrips]
) -> None:
    """A replica's writer appends between two batches of ours: the one statement finds
    a head it did not sign and writes nothing; the locked path then appends after it."""
    through, trips = relayed
    ours = AuditWriter(through.sessions, KEY, strict=True)
    theirs = AuditWriter(store.sessions, KEY, strict=True)
    try:
        await write_many(ours, 2)
        await theirs.write(entry(3))
        before = trips.count
        await ours.write(entry(4))
        assert trips.count - before > 1  # one statement that wrote nothing, then the lock
        before = trips.count
        await ours.write(entry(5))
        assert trips.count - before == 1  # and the head is known again
    finally:
        await ours.aclose()
        await theirs.aclose()
    assert await seqs(store) == [1, 2, 3, 4, 5]
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 5)


class Jobs(ThreadPoolExecutor):
    """A one-thread executor that counts the jobs it is given."""

    def __init__(self) -> None:
        super().__init__(1)
        self.count = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.count += 1
        return super().submit(fn, *args, **kwargs)


async def test_sqlite_one_thread_hop_per_batch(store: Store) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("thread hops: SQLite")
    checkouts: list[object] = []
    event.listen(store.engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
    jobs = Jobs()
    writer = AuditWriter(store.sessions, KEY, strict=True, executor=jobs)
    try:
        for n in range(1, 4):
            await writer.write(entry(n))
        assert (jobs.count, writer.batches) == (3, 3)
        await write_many(writer, 60, start=4)
        assert jobs.count == writer.batches < 63  # grouped, one hop each
        assert checkouts == []  # nothing went through aiosqlite
    finally:
        await writer.aclose()
        jobs.shutdown()
    assert await seqs(store) == list(range(1, 64))
    assert (await verify_store(store.sessions, KEY)).ok


async def test_a_batch_after_a_known_head_holds_any_detail(store: Store) -> None:
    """Detail JSON the one statement must carry through (NUL, non-ASCII, nesting, big
    numbers) is stored as the locked path stores it, and the chain verifies."""
    writer = AuditWriter(store.sessions, KEY, strict=True)
    odd = {"nul": "a\x00b", "text": "二\n\"'", "deep": [[{"x": None}]], "big": 2**62, "f": 1e-7}
    try:
        await writer.write(entry(1))
        await writer.write(entry(2, detail=odd))
        await writer.write(entry(3))
    finally:
        await writer.aclose()
    assert await seqs(store) == [1, 2, 3]
    assert (await verify_store(store.sessions, KEY)).ok
