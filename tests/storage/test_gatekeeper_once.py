"""The gatekeeper on a real store (SQLite and PostgreSQL): a burst of calls with one new
key reads it from the database ONCE, counted at the engine's cursor; the others wait for
that lookup, and a caller that goes away does not cancel it for them."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from enclave.auth.apikeys import new_key
from enclave.config import load_settings
from enclave.errors import AuthenticationFailed
from enclave.gateway.gatekeeper import Gatekeeper
from enclave.store.repos import KeyRepo, Store, UserRepo

pytestmark = pytest.mark.anyio
SECRET = b"k" * 32


def selects_of(store: Store, table: str) -> list[str]:
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", note)
    return seen


async def test_a_burst_with_one_new_key_reads_it_once(store: Store) -> None:
    await UserRepo(store).add("ann", "user")
    made = new_key()
    await KeyRepo(store).create(
        "ann", name="k", prefix=made.prefix, secret_hash=made.secret_hash, rpm=5
    )
    gatekeeper = Gatekeeper(load_settings(None), store, SECRET)
    reads = selects_of(store, "api_keys")
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
    first = asyncio.ensure_future(gatekeeper.principal(f"Bearer {made.key}"))
    second = asyncio.ensure_future(gatekeeper.principal(f"Bearer {made.key}"))
    await asyncio.sleep(0)  # both are waiting on the one lookup
    first.cancel()
    async with asyncio.timeout(30):
        assert (await second).user == "bob"
    assert first.cancelled()
