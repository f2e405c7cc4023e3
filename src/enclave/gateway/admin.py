"""``/api/auth/*`` (web sessions) and ``/api/admin/*`` (users and keys, for the console).

Thin routes: parse, call :class:`enclave.identity.Identity`, answer. The edge has already
checked the caller (administrators only under ``/api/admin``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from enclave.auth.tokens import decode, issue
from enclave.errors import TooManyRequests
from enclave.gateway.access import actor
from enclave.gateway.body import parse, read_json
from enclave.identity import KeySpec, key_view, user_view

if TYPE_CHECKING:
    from enclave.gateway.services import Services

BODY_LIMIT = 64 * 1024
LOCK_MAX_S = 300


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1)


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: str = "user"
    password: str = Field(min_length=1, max_length=1024)


class NewPassword(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class NewKey(BaseModel):
    user: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=64)
    expires: str = "30d"
    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    allow: list[str] = Field(default_factory=list)


def is_admin(request: Request) -> bool:
    principal = getattr(request.state, "principal", None)
    return principal is not None and principal.role == "admin"


M = TypeVar("M", bound=BaseModel)


async def body_of(request: Request, model: type[M]) -> M:
    return parse(model, await read_json(request, BODY_LIMIT))


def install(app: FastAPI, services: Services) -> None:
    _auth_routes(app, services)
    _user_routes(app, services)
    _key_routes(app, services)


def _auth_routes(app: FastAPI, services: Services) -> None:
    @app.post("/api/auth/login")
    async def login(request: Request) -> dict[str, Any]:
        given = await body_of(request, Login)
        await _check_lock(services, given.username)
        user = await services.identity.login(actor(request), given.username, given.password)
        return _tokens(services, user.name, user.role)

    @app.post("/api/auth/refresh")
    async def refresh(request: Request) -> dict[str, Any]:
        given = await body_of(request, Refresh)
        claims = decode(services.secret, given.refresh_token, "refresh")
        user = await services.identity.users.get(claims.user)
        if user is None or user.disabled:
            from enclave.errors import AuthenticationFailed

            raise AuthenticationFailed("invalid or expired session")
        return _tokens(services, user.name, user.role)

    @app.get("/api/auth/me")
    async def me(request: Request) -> dict[str, Any]:
        who = actor(request)
        principal = getattr(request.state, "principal", None)
        return {"user": who.user, "role": principal.role if principal else None,
                "key_prefix": who.key_prefix}  # fmt: skip


def _tokens(services: Services, user: str, role: str) -> dict[str, Any]:
    auth = services.settings.auth
    return {
        "token_type": "bearer",
        "access_token": issue(services.secret, user=user, role=role, ttl_s=auth.session_ttl_s,
                              kind="access"),
        "refresh_token": issue(services.secret, user=user, role=role, ttl_s=auth.refresh_ttl_s,
                               kind="refresh"),
        "expires_in": auth.session_ttl_s,
    }  # fmt: skip


async def _check_lock(services: Services, name: str) -> None:
    """After ``login_attempts`` failures a user's logins are refused for a while that
    doubles with each further failure (up to 5 minutes), right password or not."""
    user = await services.identity.users.get(name)
    allowed = services.settings.auth.login_attempts
    if user is None or user.failed_logins < allowed or user.last_failed_at is None:
        return
    wait = min(2 ** (user.failed_logins - allowed), LOCK_MAX_S)
    left = wait - (datetime.now(UTC) - user.last_failed_at).total_seconds()
    if left > 0:
        raise TooManyRequests(
            f"too many failed logins for {name} (auth.login_attempts={allowed}); "
            f"retry in {math.ceil(left)} s",
            retry_after=math.ceil(left),
        )


def _user_routes(app: FastAPI, services: Services) -> None:
    @app.get("/api/admin/users")
    async def users() -> dict[str, Any]:
        return {"data": [user_view(u) for u in await services.identity.list_users()]}

    @app.post("/api/admin/users", status_code=201)
    async def add_user(request: Request) -> dict[str, Any]:
        given = await body_of(request, NewUser)
        user = await services.identity.add_user(actor(request), given.name, given.role,
                                                given.password)  # fmt: skip
        return user_view(user)

    @app.post("/api/admin/users/{name}/disable")
    async def disable(name: str, request: Request) -> dict[str, Any]:
        await services.identity.set_disabled(actor(request), name, True)
        return {"name": name, "disabled": True}

    @app.post("/api/admin/users/{name}/enable")
    async def enable(name: str, request: Request) -> dict[str, Any]:
        await services.identity.set_disabled(actor(request), name, False)
        return {"name": name, "disabled": False}

    @app.post("/api/admin/users/{name}/password")
    async def password(name: str, request: Request) -> dict[str, Any]:
        given = await body_of(request, NewPassword)
        await services.identity.set_password(actor(request), name, given.password)
        return {"name": name}


def _key_routes(app: FastAPI, services: Services) -> None:
    @app.get("/api/admin/keys")
    async def keys(user: str | None = None) -> dict[str, Any]:
        return {"data": [key_view(k) for k in await services.identity.list_keys(user)]}

    @app.post("/api/admin/keys", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        given = await body_of(request, NewKey)
        spec = KeySpec(**given.model_dump())
        secret, key = await services.identity.create_key(actor(request), spec)
        return {"key": secret, **key_view(key)}

    @app.post("/api/admin/keys/{prefix}/revoke")
    async def revoke(prefix: str, request: Request) -> dict[str, Any]:
        key = await services.identity.revoke_key(actor(request), prefix)
        services.gatekeeper.forget(prefix)
        return key_view(key)

    @app.post("/api/admin/keys/{prefix}/rotate")
    async def rotate(prefix: str, request: Request) -> dict[str, Any]:
        secret, key = await services.identity.rotate_key(actor(request), prefix)
        services.gatekeeper.forget(prefix)
        return {"key": secret, **key_view(key)}
