"""The gatekeeper on a real store (SQLite and PostgreSQL): a burst of calls with one new
key reads it from the database ONCE, counted at the engine's cursor; the others wait for
that lookup, and a caller that goes away does not cancel it for them."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from enclave.auth.apikeys import new_key
from enclave.config import load_settings
from enclave.errors import AuthenticationFailed, ConfigError
from enclave.gateway.gatekeeper import Gatekeeper
from enclave.store.repos import KeyRepo, Store, UserRepo

pytestmark = pytest.mark.anyio
SECRET = b"k" * 32


class Selects:
    """The SELECTs on ``table`` the store's engine runs, and an event set at the first
    (the cursor hook runs on aiosqlite's thread or in asyncpg's greenlet)."""

    def __init__(self, store: Store, table: str) -> None:
        self.seen: list[str] = []
        self.started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
                self.seen.append(statement)
                loop.call_soon_threadsafe(self.started.set)

        event.listen(store.engine.sync_engine, "before_cursor_execute", note)


async def test_a_burst_with_one_new_key_reads_it_once(store: Store) -> None:
    await UserRepo(store).add("ann", "user")
    made = new_key()
    await KeyRepo(store).create(
        "ann", name="k", prefix=made.prefix, secret_hash=made.secret_hash, rpm=5
    )
    gatekeeper = Gatekeeper(load_settings(None), store, SECRET)
    reads = Selects(store, "api_keys").seen
    calls = [gatekeeper.principal(f"Bearer {made.key}") for _ in range(40)]
    principals = await asyncio.gather(*calls)
    assert {p.user for p in principals} == {"ann"}
    assert len(reads) == 1
    with pytest.raises(AuthenticationFailed):  # the shared lookup still checks each secret
        await gatekeeper.principal(f"Bearer {made.key[:-2]}xx")


async def test_a_caller_going_away_does_not_cancel_the_lookup_for_the_others(
    store: Store,
) -> None:
    await UserRepo(store).add("bob", "user")
    made = new_key()
    await KeyRepo(store).create("bob", name="k", prefix=made.prefix, secret_hash=made.secret_hash)
    gatekeeper = Gatekeeper(load_settings(None), store, SECRET)
    reads = Selects(store, "api_keys")
    first = asyncio.ensure_future(gatekeeper.principal(f"Bearer {made.key}"))
    second = asyncio.ensure_future(gatekeeper.principal(f"Bearer {made.key}"))
    async with asyncio.timeout(30):
        await reads.started.wait()  # the one lookup is running; both calls wait on it
    assert len(gatekeeper._loading) == 1
    first.cancel()
    async with asyncio.timeout(30):
        assert (await second).user == "bob"
    assert first.cancelled()
    assert len(reads.seen) == 1


async def test_a_revocation_here_is_not_hidden_by_a_lookup_in_flight(store: Store) -> None:
    """Calls after ``forget`` read afresh instead of joining a lookup that started before
    the key was revoked, and that lookup caches nothing."""
    await UserRepo(store).add("cat", "user")
    made = new_key()
    keys = KeyRepo(store)
    await keys.create("cat", name="k", prefix=made.prefix, secret_hash=made.secret_hash)
    gatekeeper = Gatekeeper(load_settings(None), store, SECRET)
    reads = Selects(store, "api_keys")
    before = asyncio.ensure_future(gatekeeper.principal(f"Bearer {made.key}"))
    async with asyncio.timeout(30):
        await reads.started.wait()
    assert gatekeeper._loading
    await keys.revoke(made.prefix, datetime.now(UTC))
    gatekeeper.forget(made.prefix)
    with pytest.raises(AuthenticationFailed):
        await gatekeeper.principal(f"Bearer {made.key}")
    with contextlib.suppress(AuthenticationFailed):  # began before: may see the key or not,
        await before  # but caches nothing
    with pytest.raises(AuthenticationFailed):
        await gatekeeper.principal(f"Bearer {made.key}")


async def test_a_key_whose_stored_allowlist_does_not_parse(store: Store) -> None:
    """A wrong secret is the usual 401; the right one names the broken setting; the
    cached key is dropped with its user's other state."""
    await UserRepo(store).add("dan", "user")
    made = new_key()
    await KeyRepo(store).create(
        "dan", name="k", prefix=made.prefix, secret_hash=made.secret_hash, allow=["not-an-ip"]
    )
    gatekeeper = Gatekeeper(load_settings(None), store, SECRET)
    with pytest.raises(AuthenticationFailed):
        await gatekeeper.principal(f"Bearer {made.key[:-2]}xx")
    with pytest.raises(ConfigError, match="not-an-ip"):
        await gatekeeper.principal(f"Bearer {made.key}")
    assert made.prefix in gatekeeper._cache
    gatekeeper.forget_sessions(user="dan")
    assert made.prefix not in gatekeeper._cache
