"""Migrations and repositories, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from enclave.errors import Conflict, InvalidRequest, NotFound
from enclave.store.db import make_engine, prepare_sqlite_file
from enclave.store.migrate import current, head, include_name, upgrade
from enclave.store.models import ApiKey
from enclave.store.repos import KeyRepo, Store, UserRepo, open_store
from enclave.store.schema import metadata

pytestmark = pytest.mark.anyio

TABLES = {"users", "api_keys", "audit", "audit_head", "audit_checkpoints", "alembic_version"}
TABLES |= {"kb", "kb_documents", "kb_chunks"}  # knowledge bases (dialect-specific ones left out)
TABLES |= {"memory_recent", "memories", "memory_owners"}  # memory tiers
TABLES |= {"assistant_profiles", "conversations", "conversation_messages"}  # assistants
TABLES |= {"web_sessions", "login_failures"}  # revocable web sessions, lockout per name
TABLES |= {"task_defs", "task_runs", "task_events", "task_schedules"}  # agent tasks
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _tables(connection: Connection) -> set[str]:
    names = inspect(connection).get_table_names()
    return {name for name in names if include_name(name, "table", {})}


def _diff(connection: Connection) -> list[Any]:
    return list(
        compare_metadata(
            MigrationContext.configure(connection, opts={"include_name": include_name}),
            metadata,
        )
    )


def _aware_utc(*values: datetime | None) -> None:
    for value in values:
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


# migrations


async def test_upgrade_creates_the_schema_and_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert await current(engine) is None
        await upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == TABLES
        assert await current(engine) == head()
        await upgrade(engine)  # a second start: nothing to do
        assert await current(engine) == head()
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == TABLES
            versions = await connection.execute(text("SELECT count(*) FROM alembic_version"))
            assert versions.scalar_one() == 1
    finally:
        await engine.dispose()


async def test_processes_starting_together_migrate_once(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(upgrade(engine) for engine in engines))
        for engine in engines:
            assert await current(engine) == head()
    finally:
        for engine in engines:
            await engine.dispose()


def test_racing_switches_to_wal_all_succeed(tmp_path: Path) -> None:
    """Eight engines made at once on a new file: every one returns, and the file is WAL."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}"
    start = threading.Barrier(8)

    def make() -> None:
        start.wait(timeout=30)
        prepare_sqlite_file(url)

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(make) for _ in range(8)]:
            future.result(timeout=60)
    with contextlib.closing(sqlite3.connect(tmp_path / "enclave.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_migration_head_matches_the_models(store: Store) -> None:
    async with store.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_open_store_creates_the_sqlite_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "enclave.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.is_file()
        async with store.engine.connect() as connection:
            mode = await connection.exec_driver_sql("PRAGMA journal_mode")
            assert mode.scalar_one() == "wal"
    finally:
        await store.aclose()


# users


async def test_users_add_get_list(store: Store) -> None:
    users = UserRepo(store, clock=Clock())
    alice = await users.add("alice", "admin", "hash-a")
    await users.add("bob", "user")
    assert (alice.name, alice.role, alice.password_hash, alice.disabled) == (
        "alice", "admin", "hash-a", False,
    )  # fmt: skip
    got = await users.get("alice")
    assert got is not None
    assert (got.id, got.created_at, got.failed_logins) == (alice.id, T0, 0)
    assert await users.get("nobody") is None
    assert [u.name for u in await users.list()] == ["alice", "bob"]
    bob = await users.get("bob")
    assert bob is not None
    assert bob.password_hash is None


async def test_duplicate_user_is_a_conflict(store: Store) -> None:
    users = UserRepo(store)
    await users.add("alice", "user")
    with pytest.raises(Conflict, match="user 'alice' already exists") as caught:
        await users.add("alice", "admin")
    assert caught.value.status == 409
    assert len(await users.list()) == 1


async def test_unknown_role_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="role"):
        await UserRepo(store).add("alice", "root")


async def test_disable_and_count_admins(store: Store) -> None:
    users = UserRepo(store)
    await users.add("root", "admin")
    await users.add("ops", "admin")
    await users.add("dev", "user")
    assert await users.count_admins() == 2
    disabled = await users.set_disabled("ops", True)
    assert disabled.disabled is True
    assert await users.count_admins() == 1
    assert await users.count_admins(include_disabled=True) == 2
    got = await users.get("ops")
    assert got is not None
    assert got.disabled is True
    await users.set_disabled("ops", False)
    assert await users.count_admins() == 2
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        await users.set_disabled("ghost", True)


async def test_login_counters_and_password(store: Store) -> None:
    users = UserRepo(store)
    await users.add("alice", "user", "old")
    assert await users.login_failed("alice", T0) == 1
    assert await users.login_failed("alice", T0 + timedelta(seconds=1)) == 2
    got = await users.get("alice")
    assert got is not None
    assert (got.failed_logins, got.last_failed_at) == (2, T0 + timedelta(seconds=1))
    _aware_utc(got.last_failed_at)
    ok = await users.login_ok("alice")
    assert (ok.failed_logins, ok.last_failed_at) == (0, None)
    await users.login_failed("alice", T0)
    changed = await users.set_password("alice", "new")
    assert (changed.password_hash, changed.failed_logins) == ("new", 0)
    got = await users.get("alice")
    assert got is not None
    assert (got.password_hash, got.failed_logins, got.last_failed_at) == ("new", 0, None)
    with pytest.raises(NotFound):
        await users.login_failed("ghost", T0)
    with pytest.raises(NotFound):
        await users.set_password("ghost", "x")


# keys


async def _key(keys: KeyRepo, user: str, prefix: str, **options: Any) -> ApiKey:
    return await keys.create(
        user, name=f"key {prefix}", prefix=prefix, secret_hash="0" * 64, **options
    )


async def test_key_create_and_by_prefix_loads_the_user(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store, clock=Clock())
    made = await keys.create(
        "alice", name="ci", prefix="ek-abc123", secret_hash="f" * 64, models=["qwen*"],
        rpm=60, tpm=10_000, max_concurrency=2, allow=["10.0.0.0/8"],
        expires_at=T0 + timedelta(days=30),
    )  # fmt: skip
    assert made.user.name == "alice"
    found = await keys.by_prefix("ek-abc123")
    assert found is not None
    assert found.user.name == "alice"  # loaded: no lazy load after the session is gone
    assert (found.name, found.secret_hash, found.models, found.allow) == (
        "ci", "f" * 64, ["qwen*"], ["10.0.0.0/8"],
    )  # fmt: skip
    assert (found.rpm, found.tpm, found.max_concurrency) == (60, 10_000, 2)
    assert (found.created_at, found.expires_at) == (T0, T0 + timedelta(days=30))
    assert found.revoked_at is None
    assert found.last_used_at is None
    assert await keys.by_prefix("ek-nothing") is None


async def test_key_defaults(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store)
    await _key(keys, "alice", "ek-1")
    found = await keys.by_prefix("ek-1")
    assert found is not None
    assert (found.models, found.allow, found.rpm, found.expires_at) == ([], [], None, None)


async def test_key_for_unknown_user_or_taken_prefix(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store)
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        await _key(keys, "ghost", "ek-1")
    await _key(keys, "alice", "ek-1")
    with pytest.raises(Conflict, match="prefix 'ek-1'"):
        await _key(keys, "alice", "ek-1")


async def test_key_list(store: Store) -> None:
    users = UserRepo(store)
    await users.add("alice", "user")
    await users.add("bob", "user")
    keys = KeyRepo(store)
    for user, prefix in [("alice", "ek-a1"), ("bob", "ek-b1"), ("alice", "ek-a2")]:
        await _key(keys, user, prefix)
    everything = await keys.list()
    assert [(k.prefix, k.user.name) for k in everything] == [
        ("ek-a1", "alice"), ("ek-b1", "bob"), ("ek-a2", "alice"),
    ]  # fmt: skip
    assert [k.prefix for k in await keys.list("alice")] == ["ek-a1", "ek-a2"]
    assert [k.prefix for k in await keys.list("bob")] == ["ek-b1"]
    with pytest.raises(NotFound):
        await keys.list("ghost")


async def test_key_revoke(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store)
    await _key(keys, "alice", "ek-1")
    revoked = await keys.revoke("ek-1", T0)
    assert (revoked.revoked_at, revoked.user.name) == (T0, "alice")
    again = await keys.revoke("ek-1", T0 + timedelta(hours=1))
    assert again.revoked_at == T0  # the first revocation stands
    found = await keys.by_prefix("ek-1")
    assert found is not None
    assert found.revoked_at == T0
    with pytest.raises(NotFound, match="no API key with prefix 'ek-nope'") as caught:
        await keys.revoke("ek-nope", T0)
    assert caught.value.status == 404


async def test_key_touch_is_batched_and_only_moves_forward(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store)
    for prefix in ("ek-1", "ek-2", "ek-3"):
        await _key(keys, "alice", prefix)
    await keys.touch({})
    await keys.touch({"ek-1": T0, "ek-2": T0 + timedelta(seconds=5), "ek-gone": T0})
    await keys.touch({"ek-1": T0 - timedelta(seconds=1)})  # late report of an older use
    seen = {k.prefix: k.last_used_at for k in await keys.list()}
    assert seen == {"ek-1": T0, "ek-2": T0 + timedelta(seconds=5), "ek-3": None}
    await keys.touch({"ek-1": T0 + timedelta(minutes=1)})
    found = await keys.by_prefix("ek-1")
    assert found is not None
    assert found.last_used_at == T0 + timedelta(minutes=1)
    _aware_utc(found.last_used_at)


# times


async def test_times_come_back_aware_utc(store: Store) -> None:
    local = datetime(2026, 3, 1, 20, 0, 0, 123456, tzinfo=BEIJING)
    users = UserRepo(store, clock=Clock(local))
    await users.add("alice", "admin")
    keys = KeyRepo(store, clock=Clock(local))
    await _key(keys, "alice", "ek-1", expires_at=local + timedelta(days=1))
    await keys.revoke("ek-1", local)
    await keys.touch({"ek-1": local})
    await users.login_failed("alice", local)
    user = await users.get("alice")
    key = await keys.by_prefix("ek-1")
    assert user is not None
    assert key is not None
    _aware_utc(user.created_at, user.last_failed_at)
    _aware_utc(
        key.created_at, key.expires_at, key.revoked_at, key.last_used_at, key.user.created_at
    )
    assert user.created_at == local  # the same instant ...
    assert user.created_at.hour == 12  # ... told in UTC
    assert key.expires_at == local + timedelta(days=1)


async def test_naive_times_are_refused(store: Store) -> None:
    await UserRepo(store).add("alice", "user")
    keys = KeyRepo(store)
    naive = datetime(2026, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="naive"):
        await _key(keys, "alice", "ek-1", expires_at=naive)
    with pytest.raises(ValueError, match="naive"):
        await UserRepo(store).login_failed("alice", naive)
