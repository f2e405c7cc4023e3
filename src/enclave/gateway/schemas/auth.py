"""``/api/auth``: web sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1)


class Tokens(BaseModel):
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme, not a secret)
    access_token: str
    # null when it went into the enclave_refresh cookie (the X-Enclave-CSRF header)
    refresh_token: str | None
    expires_in: int


class Me(BaseModel):
    user: str | None
    role: str | None
    key_prefix: str | None


class LoggedOut(BaseModel):
    logged_out: Literal[True] = True
