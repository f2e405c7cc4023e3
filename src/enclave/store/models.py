"""The core tables: users, keys, audit. Times are timezone-aware UTC; audit fields are
plain values so that a record's hash is computed the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from enclave.store.base import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | user
    password_hash: Mapped[str | None] = mapped_column(String(256))
    # local (made here, password hash here) | ldap (the company directory signs it in)
    source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None]
    # The user's policy, like a key's: every key of the user and every web session is
    # bounded by it as well as by the key's own (the stricter wins).
    models: Mapped[list[str]] = mapped_column(JSON, default=list)  # glob patterns; [] = all
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="user")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)  # shown; identifies the key
    secret_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the whole key
    models: Mapped[list[str]] = mapped_column(JSON, default=list)  # glob patterns; [] = all
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)  # CIDRs; [] = the global list
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="keys")


class AuditRecord(Base):
    """One API call or administrative action; ``hash`` chains it to the record before."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[str] = mapped_column(String(32), index=True)  # ISO 8601 UTC, microseconds
    kind: Mapped[str] = mapped_column(String(16))  # api | admin
    action: Mapped[str] = mapped_column(String(64))  # route, or e.g. keys.create, login.failed
    request_id: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[str | None] = mapped_column(String(64))
    key_prefix: Mapped[str | None] = mapped_column(String(32))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256))
    member: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)  # SHA-256 of each image
    content: Mapped[str | None] = mapped_column(Text)  # per audit.content: hash or full JSON
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last record, signed: deleting records at the end is detected too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """Where pruning cut the chain: the last pruned record's seq and hash, signed."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[str] = mapped_column(String(32))
    upto_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    last_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))
