"""Web sessions and failed logins.

A *session* is one login: its access and refresh tokens carry its id (``sid``). Each
refresh rotates the refresh token: the session row names the one refresh token id that
is still good (``refresh_jti``); any other refresh token of the session is a used one,
and presenting it revokes the session (its whole token family). Revoking a session
revokes its access tokens too, since each access token names its session.

Failed logins are counted per *name tried*, existing or not, so that the lockout treats
unknown names exactly like real ones and tells no one which names exist.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from enclave.store.base import Base


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the tokens' ``sid``
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    refresh_jti: Mapped[str] = mapped_column(String(64))  # the one refresh token still good
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # of the newest refresh token: the row may go after this
    revoked_at: Mapped[datetime | None]
    revoked_why: Mapped[str | None] = mapped_column(String(32))  # logout, reuse, password...


class LoginFailure(Base):
    __tablename__ = "login_failures"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # the name tried
    count: Mapped[int] = mapped_column(Integer)
    last_failed_at: Mapped[datetime]
