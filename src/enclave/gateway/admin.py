"""``/api/auth/*`` (web sessions) and ``/api/admin/*`` (users and keys, for the console).

Thin routes: parse, call :class:`enclave.identity.Identity`, answer. Each route names its
rule from :mod:`enclave.gateway.access`; the schemas are in :mod:`.schemas.auth` and
:mod:`.schemas.admin`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from enclave.auth.tokens import decode, issue
from enclave.errors import TooManyRequests
from enclave.gateway import access
from enclave.gateway.access import actor
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.body import parse, read_json
from enclave.gateway.schemas import Page
from enclave.gateway.schemas.admin import (
    KeyCreate,
    KeyPublic,
    KeySecret,
    PasswordUpdate,
    UserCreate,
    UserDisabled,
    UserName,
    UserPublic,
)
from enclave.gateway.schemas.auth import Login, Me, Refresh, Tokens
from enclave.identity import KeySpec

if TYPE_CHECKING:
    from enclave.gateway.services import Services

BODY_LIMIT = 64 * 1024
LOCK_MAX_S = 300

M = TypeVar("M", bound=BaseModel)


async def body_of(request: Request, model: type[M]) -> M:
    return parse(model, await read_json(request, BODY_LIMIT))


def routers(services: Services) -> list[APIRouter]:
    # Everything under /api/admin is for administrators, closed without authentication.
    admin = APIRouter(prefix="/api/admin", dependencies=[access.ADMIN], responses=ERRORS)
    _user_routes(admin, services)
    _key_routes(admin, services)
    return [_auth_routes(services), admin]


def unknown_admin_paths() -> APIRouter:
    """``/api/admin/*`` paths no route has: 403 for non-administrators (and without
    authentication), like known ones, so the admin API shows no one what it holds; 404 or
    405 for administrators. The app adds it after every other route."""
    router = APIRouter(prefix="/api/admin", dependencies=[access.ADMIN])
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @router.api_route("/{rest:path}", methods=methods, include_in_schema=False)
    async def unknown(request: Request) -> None:
        for route in request.app.routes:
            other = isinstance(route, APIRoute) and route.endpoint is not unknown
            if other and route.matches(request.scope)[0] is Match.PARTIAL:
                raise HTTPException(405)
        raise HTTPException(404)

    return router


def _auth_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/auth", responses=ERRORS)

    @router.post("/login", dependencies=[access.PUBLIC], openapi_extra=json_body(Login))
    async def login(request: Request) -> Tokens:
        given = await body_of(request, Login)
        await _check_lock(services, given.username)
        user = await services.identity.login(actor(request), given.username, given.password)
        return _tokens(services, user.name, user.role)

    @router.post("/refresh", dependencies=[access.PUBLIC], openapi_extra=json_body(Refresh))
    async def refresh(request: Request) -> Tokens:
        given = await body_of(request, Refresh)
        claims = decode(services.secret, given.refresh_token, "refresh")
        user = await services.identity.users.get(claims.user)
        if user is None or user.disabled:
            from enclave.errors import AuthenticationFailed

            raise AuthenticationFailed("invalid or expired session")
        return _tokens(services, user.name, user.role)

    @router.get("/me")
    async def me(request: Request, caller: access.CallerDep) -> Me:
        who = actor(request)
        return Me(user=who.user, role=caller.role, key_prefix=who.key_prefix)

    return router


def _tokens(services: Services, user: str, role: str) -> Tokens:
    auth = services.settings.auth
    return Tokens(
        access_token=issue(services.secret, user=user, role=role, ttl_s=auth.session_ttl_s,
                           kind="access"),
        refresh_token=issue(services.secret, user=user, role=role, ttl_s=auth.refresh_ttl_s,
                            kind="refresh"),
        expires_in=auth.session_ttl_s,
    )  # fmt: skip


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


def _user_routes(router: APIRouter, services: Services) -> None:
    @router.get("/users")
    async def users() -> Page[UserPublic]:
        return Page[UserPublic](
            data=[UserPublic.of(u) for u in await services.identity.list_users()]
        )

    @router.post("/users", status_code=201, openapi_extra=json_body(UserCreate))
    async def add_user(request: Request) -> UserPublic:
        given = await body_of(request, UserCreate)
        user = await services.identity.add_user(actor(request), given.name, given.role,
                                                given.password)  # fmt: skip
        return UserPublic.of(user)

    @router.post("/users/{name}/disable")
    async def disable(name: str, request: Request) -> UserDisabled:
        await services.identity.set_disabled(actor(request), name, True)
        return UserDisabled(name=name, disabled=True)

    @router.post("/users/{name}/enable")
    async def enable(name: str, request: Request) -> UserDisabled:
        await services.identity.set_disabled(actor(request), name, False)
        return UserDisabled(name=name, disabled=False)

    @router.post("/users/{name}/password", openapi_extra=json_body(PasswordUpdate))
    async def password(name: str, request: Request) -> UserName:
        given = await body_of(request, PasswordUpdate)
        await services.identity.set_password(actor(request), name, given.password)
        return UserName(name=name)


def _key_routes(router: APIRouter, services: Services) -> None:
    @router.get("/keys")
    async def keys(user: str | None = None) -> Page[KeyPublic]:
        return Page[KeyPublic](
            data=[KeyPublic.of(k) for k in await services.identity.list_keys(user)]
        )

    @router.post("/keys", status_code=201, openapi_extra=json_body(KeyCreate))
    async def create(request: Request) -> KeySecret:
        given = await body_of(request, KeyCreate)
        spec = KeySpec(**given.model_dump())
        secret, key = await services.identity.create_key(actor(request), spec)
        return KeySecret.made(secret, key)

    @router.post("/keys/{prefix}/revoke")
    async def revoke(prefix: str, request: Request) -> KeyPublic:
        key = await services.identity.revoke_key(actor(request), prefix)
        services.gatekeeper.forget(prefix)
        return KeyPublic.of(key)

    @router.post("/keys/{prefix}/rotate")
    async def rotate(prefix: str, request: Request) -> KeySecret:
        secret, key = await services.identity.rotate_key(actor(request), prefix)
        services.gatekeeper.forget(prefix)
        return KeySecret.made(secret, key)
