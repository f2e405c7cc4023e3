"""``/api/auth/*`` (web sessions) and ``/api/admin/*`` (users and keys, for the console).

Thin routes: parse, call :class:`enclave.identity.Identity`, answer. Each route names its
rule from :mod:`enclave.gateway.access`; the schemas are in :mod:`.schemas.auth` and
:mod:`.schemas.admin`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from enclave.auth.tokens import decode, issue
from enclave.errors import InvalidRequest, TooManyRequests
from enclave.gateway import access, session_cookie
from enclave.gateway.access import actor
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.body import loads, parse, read_body, read_json
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
    UserUpdate,
)
from enclave.gateway.schemas.auth import LoggedOut, Login, Me, Refresh, Tokens
from enclave.identity import KeySpec, directory_lock_key

if TYPE_CHECKING:
    from enclave.gateway.services import Services

BODY_LIMIT = 64 * 1024
LOCK_MAX_S = 300

M = TypeVar("M", bound=BaseModel)


async def body_of(request: Request, model: type[M]) -> M:
    return parse(model, await read_json(request, BODY_LIMIT, "the admin API's fixed limit"))


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
    async def login(request: Request, response: Response) -> Tokens:
        """Tokens for a user; with ``X-Enclave-CSRF: 1`` the refresh token goes into the
        HttpOnly ``enclave_refresh`` cookie instead of the body (the web console)."""
        given = await body_of(request, Login)
        await _check_lock(services, given.username)
        key = directory_lock_key(given.username)  # directory names: counted without case
        if services.settings.auth.ldap is not None and key != given.username:
            await _check_lock(services, key)
        user = await services.identity.login(
            actor(request), given.username, given.password, services.directory()
        )
        if user.source == "ldap":  # its role may have changed: sessions were revoked
            services.gatekeeper.forget_sessions(user=user.name)
        sid, jti = await services.identity.open_session(user, services.settings.auth.refresh_ttl_s)
        tokens = _tokens(services, user.name, user.role, sid, jti)
        return _answer(services, request, response, tokens)

    @router.post("/refresh", dependencies=[access.PUBLIC], openapi_extra=json_body(Refresh))
    async def refresh(request: Request, response: Response) -> Tokens:
        """A new access and refresh token; the refresh token given is spent. Presenting a
        spent one again revokes its whole session (every token from that login). With
        ``X-Enclave-CSRF: 1`` the token may come from the ``enclave_refresh`` cookie (body
        ``{}`` or none) and the new one goes back into it."""
        token = await _refresh_token(request)
        claims = decode(services.secret, token, "refresh")
        ttl = services.settings.auth.refresh_ttl_s
        try:
            user, jti = await services.identity.refresh(
                actor(request), claims.session, claims.jti, ttl, services.directory()
            )
        finally:  # a reuse revoked the session: its access tokens end here at once
            services.gatekeeper.forget_sessions(session=claims.session)
        tokens = _tokens(services, user.name, user.role, claims.session, jti)
        return _answer(services, request, response, tokens)

    @router.post("/logout")
    async def logout(request: Request, response: Response, caller: access.CallerDep) -> LoggedOut:
        """End the calling web session: its access and refresh tokens stop working (with
        ``X-Enclave-CSRF: 1`` the ``enclave_refresh`` cookie is cleared too)."""
        session = caller.principal.session if caller.principal else None
        if session is None:
            raise InvalidRequest(
                "logout ends a web session; call it with the session's access token "
                "(API keys are revoked with `enclave keys revoke`)"
            )
        await services.identity.logout(actor(request), session)
        services.gatekeeper.forget_sessions(session=session)
        if session_cookie.wanted(request):
            secure = session_cookie.https(request, services.gatekeeper.trusted)
            session_cookie.clear(response, secure=secure)
        return LoggedOut()

    @router.get("/me")
    async def me(request: Request, caller: access.CallerDep) -> Me:
        who = actor(request)
        return Me(user=who.user, role=caller.role, key_prefix=who.key_prefix)

    return router


async def _refresh_token(request: Request) -> str:
    """The body's refresh token; with the console's header, the cookie's when the body
    (``{}`` or empty) has none."""
    if not session_cookie.wanted(request):
        return (await body_of(request, Refresh)).refresh_token
    raw = await read_body(request, BODY_LIMIT, setting="the admin API's fixed limit")
    given = loads(raw) if raw.strip() else {}
    if given.get("refresh_token") is None and set(given) <= {"refresh_token"}:
        return session_cookie.refresh_token(request)
    return parse(Refresh, given).refresh_token


def _answer(services: Services, request: Request, response: Response, tokens: Tokens) -> Tokens:
    """With the console's header the refresh token goes into the cookie, not the body."""
    if session_cookie.wanted(request) and tokens.refresh_token:
        ttl = services.settings.auth.refresh_ttl_s
        secure = session_cookie.https(request, services.gatekeeper.trusted)
        session_cookie.store(response, tokens.refresh_token, ttl, secure=secure)
        tokens.refresh_token = None
    return tokens


def _tokens(services: Services, user: str, role: str, sid: str, jti: str) -> Tokens:
    auth, key = services.settings.auth, services.secret
    return Tokens(
        access_token=issue(key, user=user, role=role, ttl_s=auth.session_ttl_s, kind="access",
                           session=sid),
        refresh_token=issue(key, user=user, role=role, ttl_s=auth.refresh_ttl_s,
                            kind="refresh", session=sid, jti=jti),
        expires_in=auth.session_ttl_s,
    )  # fmt: skip


async def _check_lock(services: Services, name: str) -> None:
    """After ``login_attempts`` failures a name's logins are refused for ``lockout_s``, a
    while that doubles with each further failure (up to 5 minutes), right password or not. Failures
    are counted per name tried, so an unknown name locks exactly like a real one: the
    answers tell no one which names exist."""
    failures = await services.identity.failures.get(name)
    allowed = services.settings.auth.login_attempts
    if failures is None or failures[0] < allowed:
        return
    count, last = failures
    wait = min(services.settings.auth.lockout_s * 2 ** (count - allowed), LOCK_MAX_S)
    left = wait - (datetime.now(UTC) - last).total_seconds()
    if left > 0:
        raise TooManyRequests(
            f"too many failed logins for this user name (auth.login_attempts={allowed}); "
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
                                                given.password, given.policy())  # fmt: skip
        return UserPublic.of(user)

    @router.patch("/users/{name}", openapi_extra=json_body(UserUpdate))
    async def change(name: str, request: Request) -> UserPublic:
        """Change a user's role or policy; a new role ends the user's web sessions."""
        given = await body_of(request, UserUpdate)
        user = await services.identity.set_user(
            actor(request), name, role=given.role, policy=given.policy()
        )
        services.gatekeeper.forget_sessions(user=name)
        return UserPublic.of(user)

    @router.post("/users/{name}/disable")
    async def disable(name: str, request: Request) -> UserDisabled:
        await services.identity.set_disabled(actor(request), name, True)
        services.gatekeeper.forget_sessions(user=name)
        return UserDisabled(name=name, disabled=True)

    @router.post("/users/{name}/enable")
    async def enable(name: str, request: Request) -> UserDisabled:
        await services.identity.set_disabled(actor(request), name, False)
        return UserDisabled(name=name, disabled=False)

    @router.post("/users/{name}/password", openapi_extra=json_body(PasswordUpdate))
    async def password(name: str, request: Request) -> UserName:
        given = await body_of(request, PasswordUpdate)
        await services.identity.set_password(actor(request), name, given.password)
        services.gatekeeper.forget_sessions(user=name)
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
