"""Repositories of web sessions (refresh-token families) and of failed logins.

Each call is its own transaction. A refresh is one conditional UPDATE (the session's
refresh token id moves from the presented one to the new one only if the presented one
is still the good one), so two refreshes racing with the same token cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError

from enclave.store.models import User
from enclave.store.models_sessions import LoginFailure, WebSession
from enclave.store.repos import Sessions, Store, _sessions, as_utc

Rotation = Literal["rotated", "reused", "invalid"]


@dataclass(frozen=True)
class SessionState:
    """What a token of a session needs checked: the session and its user, as stored."""

    user: User
    revoked: bool


class SessionRepo:
    def __init__(self, source: Store | Sessions) -> None:
        self._sessions = _sessions(source)

    async def open(
        self, user: User, sid: str, jti: str, *, now: datetime, expires_at: datetime
    ) -> None:
        """A new session of ``user``; the user's sessions long expired go at the same time."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(WebSession)
                .where(WebSession.user_id == user.id)
                .where(WebSession.expires_at < as_utc(now))
            )
            row = WebSession(id=sid, user_id=user.id, refresh_jti=jti, created_at=as_utc(now),
                             expires_at=as_utc(expires_at))  # fmt: skip
            session.add(row)

    async def rotate(
        self, sid: str, used: str, new: str, *, now: datetime, expires_at: datetime
    ) -> Rotation:
        """Replace refresh token ``used`` by ``new``. ``reused``: ``used`` was already spent
        (the session is then revoked); ``invalid``: no such session, or revoked."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(WebSession)
                .where(WebSession.id == sid, WebSession.refresh_jti == used)
                .where(WebSession.revoked_at.is_(None))
                .values(refresh_jti=new, expires_at=as_utc(expires_at))
            )
            assert isinstance(result, CursorResult)
            if result.rowcount == 1:
                return "rotated"
            row = await session.get(WebSession, sid)
            if row is None or row.revoked_at is not None:
                return "invalid"
            row.revoked_at, row.revoked_why = as_utc(now), "reuse"
            return "reused"

    async def state(self, sid: str) -> SessionState | None:
        """The session ``sid`` and its user, or ``None`` if there is no such session."""
        statement = select(WebSession, User).join(User, User.id == WebSession.user_id)
        async with self._sessions() as session:
            found = (await session.execute(statement.where(WebSession.id == sid))).one_or_none()
        if found is None:
            return None
        row, user = found
        return SessionState(user=user, revoked=row.revoked_at is not None)

    async def revoke(self, sid: str, why: str, *, now: datetime) -> bool:
        """Revoke one session (logout); whether it was live until now."""
        return await self._revoke(WebSession.id == sid, why, now) == 1

    async def revoke_user(self, name: str, why: str, *, now: datetime) -> int:
        """Revoke every live session of user ``name``; how many there were."""
        users = select(User.id).where(User.name == name).scalar_subquery()
        return await self._revoke(WebSession.user_id == users, why, now)

    async def _revoke(self, which: ColumnElement[bool], why: str, now: datetime) -> int:
        statement = (
            update(WebSession)
            .where(which, WebSession.revoked_at.is_(None))
            .values(revoked_at=as_utc(now), revoked_why=why)
        )
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        assert isinstance(result, CursorResult)
        return result.rowcount


class LoginFailures:
    """Failed logins per name tried, whether or not a user has that name."""

    def __init__(self, source: Store | Sessions) -> None:
        self._sessions = _sessions(source)

    async def get(self, name: str) -> tuple[int, datetime] | None:
        """The failures since the last success and when the last one was."""
        async with self._sessions() as session:
            row = await session.get(LoginFailure, name)
        return None if row is None else (row.count, row.last_failed_at)

    async def failed(self, name: str, when: datetime) -> int:
        """Count one more failure for ``name``; the count now."""
        at = as_utc(when)
        for _ in range(3):  # an insert racing another process's insert: count again
            try:
                async with self._sessions.begin() as session:
                    row = await session.get(LoginFailure, name, with_for_update=True)
                    if row is None:
                        session.add(LoginFailure(name=name, count=1, last_failed_at=at))
                        return 1
                    row.count, row.last_failed_at = row.count + 1, at
                    return row.count
            except IntegrityError:
                continue
        raise RuntimeError(f"could not count a failed login for {name!r}")

    async def clear(self, name: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(LoginFailure).where(LoginFailure.name == name))
