"""``/api/admin``: users and API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.gateway.schemas import INT64_MAX, iso
from enclave.identity import UserPolicy

if TYPE_CHECKING:
    from enclave.store.models import ApiKey, User


class _Policy(BaseModel):
    """A user's policy, like a key's: ``null``/absent leaves a field as it is; ``0`` (or
    ``[]`` for models) removes that limit."""

    models: list[str] | None = None
    rpm: int | None = Field(None, ge=0, le=INT64_MAX)
    tpm: int | None = Field(None, ge=0, le=INT64_MAX)
    max_concurrency: int | None = Field(None, ge=0, le=INT64_MAX)

    def policy(self) -> UserPolicy:
        return UserPolicy(models=self.models, rpm=self.rpm, tpm=self.tpm,
                          max_concurrency=self.max_concurrency)  # fmt: skip


class UserCreate(_Policy):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: str = "user"
    password: str = Field(min_length=1, max_length=1024)


class UserUpdate(_Policy):
    role: str | None = None


class PasswordUpdate(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    name: str
    role: str
    disabled: bool
    created_at: str
    models: list[str] = Field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    source: str = Field("local", description="local, or ldap: signs in with the directory")

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(name=user.name, role=user.role, disabled=user.disabled,
                   created_at=user.created_at.isoformat(), models=list(user.models or []),
                   rpm=user.rpm, tpm=user.tpm, max_concurrency=user.max_concurrency,
                   source=user.source)  # fmt: skip


class UserDisabled(BaseModel):
    name: str
    disabled: bool


class UserName(BaseModel):
    name: str


class KeyCreate(BaseModel):
    user: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=64)
    expires: str = "30d"
    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(None, ge=1, le=INT64_MAX)
    tpm: int | None = Field(None, ge=1, le=INT64_MAX)
    max_concurrency: int | None = Field(None, ge=1, le=INT64_MAX)
    allow: list[str] = Field(default_factory=list)


class KeyPublic(BaseModel):
    prefix: str
    name: str
    user: str
    models: list[str]
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    allow: list[str]
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls(**_key_fields(key))


class _Secret(BaseModel):
    key: str


class KeySecret(KeyPublic, _Secret):
    """A key just made or rotated: the secret, shown this once, then the key."""

    @classmethod
    def made(cls, secret: str, key: ApiKey) -> KeySecret:
        return cls(key=secret, **_key_fields(key))


def _key_fields(key: ApiKey) -> dict[str, object]:
    return {
        "prefix": key.prefix, "name": key.name, "user": key.user.name, "models": key.models,
        "rpm": key.rpm, "tpm": key.tpm, "max_concurrency": key.max_concurrency,
        "allow": key.allow, "created_at": iso(key.created_at), "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at), "last_used_at": iso(key.last_used_at),
    }  # fmt: skip
