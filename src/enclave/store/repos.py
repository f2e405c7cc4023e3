"""Repositories: the only code that queries users and API keys.

``open_store(url)`` gives a migrated :class:`Store`; ``UserRepo(store)`` and
``KeyRepo(store)`` read and change rows, each call in its own transaction. What they
return is detached from any session with every column loaded (``ApiKey.user`` too),
so it can be used after the call; relationships not listed as loaded must not be
touched (async SQLAlchemy never lazy-loads). Times are timezone-aware UTC; naive
times are refused.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from enclave.errors import Conflict, InvalidRequest, NotFound
from enclave.store.base import UTCDateTime
from enclave.store.db import make_engine, sessions
from enclave.store.migrate import upgrade
from enclave.store.models import ApiKey, User

ROLES = ("admin", "user")

Clock = Callable[[], datetime]
Sessions = async_sessionmaker[AsyncSession]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive time is a programming error."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()}: give a timezone-aware one")
    return when.astimezone(UTC)


@dataclass
class Store:
    """The engine and its session factory; ``aclose()`` releases the connections."""

    engine: AsyncEngine
    sessions: Sessions

    async def aclose(self) -> None:
        await self.engine.dispose()


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """Connect to ``url`` and bring its schema to the newest revision."""
    engine = make_engine(url)
    try:
        if migrate:
            await upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    return Store(engine=engine, sessions=sessions(engine))


def _sessions(source: Store | Sessions) -> Sessions:
    return source.sessions if isinstance(source, Store) else source


class UserRepo:
    def __init__(self, source: Store | Sessions, *, clock: Clock = utcnow) -> None:
        self._sessions = _sessions(source)
        self._clock = clock

    async def add(
        self, name: str, role: str, password_hash: str | None = None, *, source: str = "local"
    ) -> User:
        """A new user; :class:`Conflict` if the name is taken. ``source="ldap"``: a user
        of the company directory (no password here)."""
        if role not in ROLES:
            raise InvalidRequest(
                f"role must be one of {', '.join(ROLES)}, not {role!r}", param="role"
            )
        user = User(
            name=name,
            role=role,
            password_hash=password_hash,
            source=source,
            disabled=False,
            created_at=as_utc(self._clock()),
            failed_logins=0,
            models=[],
        )
        try:
            async with self._sessions.begin() as session:
                if await _user(session, name) is not None:
                    raise _user_exists(name)
                session.add(user)
        except IntegrityError as exc:  # lost a race with another writer
            raise _user_exists(name) from exc
        return user

    async def get(self, name: str) -> User | None:
        async with self._sessions() as session:
            return await _user(session, name)

    async def list(self) -> builtins.list[User]:
        """All users, by name."""
        async with self._sessions() as session:
            return builtins.list((await session.scalars(select(User).order_by(User.name))).all())

    async def change(self, name: str, **values: object) -> User:
        """Set columns of user ``name`` (:class:`NotFound` if none): role, policy..."""
        if "role" in values and values["role"] not in ROLES:
            raise InvalidRequest(
                f"role must be one of {', '.join(ROLES)}, not {values['role']!r}", param="role"
            )
        return await self._change(name, **values)

    async def set_disabled(self, name: str, disabled: bool) -> User:
        return await self._change(name, disabled=disabled)

    async def set_password(self, name: str, password_hash: str | None) -> User:
        """A new password (``None``: none, no password login); clears failed logins."""
        return await self._change(
            name, password_hash=password_hash, failed_logins=0, last_failed_at=None
        )

    async def login_failed(self, name: str, when: datetime) -> int:
        """Count a failed login; returns the number of failures since the last success."""
        statement = (
            update(User)
            .where(User.name == name)
            .values(failed_logins=User.failed_logins + 1, last_failed_at=as_utc(when))
            .returning(User.failed_logins)
        )
        async with self._sessions.begin() as session:
            count = (await session.execute(statement)).scalar_one_or_none()
        if count is None:
            raise _no_user(name)
        return count

    async def login_ok(self, name: str) -> User:
        """A successful login: the failure count starts again."""
        return await self._change(name, failed_logins=0, last_failed_at=None)

    async def count_admins(self, *, include_disabled: bool = False) -> int:
        """How many admins can act (enabled ones, unless ``include_disabled``)."""
        statement = select(func.count()).select_from(User).where(User.role == "admin")
        if not include_disabled:
            statement = statement.where(User.disabled.is_(False))
        async with self._sessions() as session:
            return (await session.execute(statement)).scalar_one()

    async def _change(self, name: str, **values: object) -> User:
        async with self._sessions.begin() as session:
            user = await _user(session, name)
            if user is None:
                raise _no_user(name)
            for key, value in values.items():
                setattr(user, key, value)
        return user


class KeyRepo:
    def __init__(self, source: Store | Sessions, *, clock: Clock = utcnow) -> None:
        self._sessions = _sessions(source)
        self._clock = clock

    async def create(
        self,
        user_name: str,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        models: Iterable[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
        allow: Iterable[str] = (),
        expires_at: datetime | None = None,
    ) -> ApiKey:
        """A new key of ``user_name`` (:class:`NotFound` if no such user); ``user`` loaded."""
        try:
            async with self._sessions.begin() as session:
                user = await _user(session, user_name)
                if user is None:
                    raise _no_user(user_name)
                key = ApiKey(
                    user=user,
                    name=name,
                    prefix=prefix,
                    secret_hash=secret_hash,
                    models=builtins.list(models),
                    rpm=rpm,
                    tpm=tpm,
                    max_concurrency=max_concurrency,
                    allow=builtins.list(allow),
                    created_at=as_utc(self._clock()),
                    expires_at=None if expires_at is None else as_utc(expires_at),
                )
                session.add(key)
        except IntegrityError as exc:
            raise Conflict(
                f"an API key with prefix {prefix!r} already exists", param="prefix"
            ) from exc
        return key

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        """The key with this prefix, its ``user`` loaded; revoked and expired ones too."""
        statement = select(ApiKey).where(ApiKey.prefix == prefix).options(selectinload(ApiKey.user))
        async with self._sessions() as session:
            return (await session.scalars(statement)).one_or_none()

    async def list(self, user_name: str | None = None) -> builtins.list[ApiKey]:
        """Every key (or every key of ``user_name``), oldest first, ``user`` loaded."""
        statement = select(ApiKey).options(selectinload(ApiKey.user)).order_by(ApiKey.id)
        async with self._sessions() as session:
            if user_name is not None:
                user = await _user(session, user_name)
                if user is None:
                    raise _no_user(user_name)
                statement = statement.where(ApiKey.user_id == user.id)
            return builtins.list((await session.scalars(statement)).all())

    async def revoke(self, prefix: str, when: datetime) -> ApiKey:
        """Revoke the key (:class:`NotFound` if none); revoking twice keeps the first time."""
        statement = select(ApiKey).where(ApiKey.prefix == prefix).options(selectinload(ApiKey.user))
        async with self._sessions.begin() as session:
            key = (await session.scalars(statement)).one_or_none()
            if key is None:
                raise NotFound(f"no API key with prefix {prefix!r}", param="prefix")
            if key.revoked_at is None:
                key.revoked_at = as_utc(when)
        return key

    async def change(self, prefix: str, **values: object) -> ApiKey:
        """Set columns of the key (:class:`NotFound` if none); ``user`` loaded."""
        statement = select(ApiKey).where(ApiKey.prefix == prefix).options(selectinload(ApiKey.user))
        async with self._sessions.begin() as session:
            key = (await session.scalars(statement)).one_or_none()
            if key is None:
                raise NotFound(f"no API key with prefix {prefix!r}", param="prefix")
            for name, value in values.items():
                setattr(key, name, value)
        return key

    async def touch(self, used: Mapping[str, datetime]) -> None:
        """Record when keys were last used: one batched UPDATE; times only move forward."""
        if not used:
            return
        table = ApiKey.__table__
        assert isinstance(table, Table)
        when = bindparam("when", type_=UTCDateTime())
        statement = (
            update(table)
            .where(table.c.prefix == bindparam("key_prefix"))
            .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < when))
            .values(last_used_at=when)
        )
        rows = [{"key_prefix": p, "when": as_utc(t)} for p, t in sorted(used.items())]
        async with self._sessions.begin() as session:
            await session.execute(statement, rows)


async def _user(session: AsyncSession, name: str) -> User | None:
    return (await session.scalars(select(User).where(User.name == name))).one_or_none()


def _user_exists(name: str) -> Conflict:
    return Conflict(f"user {name!r} already exists", param="name")


def _no_user(name: str) -> NotFound:
    return NotFound(f"no user named {name!r}", param="name")
