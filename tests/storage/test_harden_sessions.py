"""Web sessions and failed logins in the store, on SQLite and PostgreSQL: a refresh token
is spent once, its reuse revokes the session, a user's sessions are revoked together,
and failures are counted per name tried, existing or not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from enclave.store.repos import Store, UserRepo
from enclave.store.sessions import LoginFailures, SessionRepo

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=7)


async def test_a_refresh_token_is_spent_once_and_its_reuse_revokes_the_session(
    store: Store,
) -> None:
    alice = await UserRepo(store).add("alice", "user")
    sessions = SessionRepo(store)
    await sessions.open(alice, "s1", "r0", now=T0, expires_at=LATER)
    await sessions.open(alice, "s2", "q0", now=T0, expires_at=LATER)
    assert await sessions.rotate("s1", "r0", "r1", now=T0, expires_at=LATER) == "rotated"
    assert await sessions.rotate("s1", "r1", "r2", now=T0, expires_at=LATER) == "rotated"
    assert await sessions.rotate("s1", "r0", "x", now=T0, expires_at=LATER) == "reused"
    state = await sessions.state("s1")
    assert state is not None
    assert (state.revoked, state.user.name) == (True, "alice")
    # the newest token of the family is dead too; another session of alice is not
    assert await sessions.rotate("s1", "r2", "r3", now=T0, expires_at=LATER) == "invalid"
    other = await sessions.state("s2")
    assert other is not None
    assert not other.revoked
    assert await sessions.rotate("nope", "r0", "r1", now=T0, expires_at=LATER) == "invalid"
    assert await sessions.state("nope") is None


async def test_two_refreshes_racing_with_one_token_cannot_both_win(store: Store) -> None:
    bob = await UserRepo(store).add("bob", "user")
    sessions = SessionRepo(store)
    await sessions.open(bob, "s", "r0", now=T0, expires_at=LATER)
    outcomes = await asyncio.gather(
        *(sessions.rotate("s", "r0", f"n{i}", now=T0, expires_at=LATER) for i in range(4))
    )
    # one wins; the first loser finds the token spent and revokes the session
    assert outcomes.count("rotated") == 1
    assert "reused" in outcomes
    state = await sessions.state("s")
    assert state is not None
    assert state.revoked


async def test_logout_and_revoking_every_session_of_a_user(store: Store) -> None:
    users = UserRepo(store)
    carol, dave = await users.add("carol", "user"), await users.add("dave", "user")
    sessions = SessionRepo(store)
    for sid, who in (("c1", carol), ("c2", carol), ("c3", carol), ("d1", dave)):
        await sessions.open(who, sid, "r", now=T0, expires_at=LATER)
    assert await sessions.revoke("c1", "logout", now=T0)
    assert not await sessions.revoke("c1", "logout", now=T0)  # once
    assert await sessions.revoke_user("carol", "password", now=T0) == 2
    for sid, revoked in (("c1", True), ("c2", True), ("c3", True), ("d1", False)):
        state = await sessions.state(sid)
        assert state is not None
        assert state.revoked is revoked


async def test_failures_are_counted_per_name_tried(store: Store) -> None:
    failures = LoginFailures(store)
    assert await failures.get("ghost") is None
    assert await failures.failed("ghost", T0) == 1
    assert await failures.failed("ghost", LATER) == 2
    assert await failures.get("ghost") == (2, LATER)
    await failures.clear("ghost")
    assert await failures.get("ghost") is None
