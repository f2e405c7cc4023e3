"""Who is calling: an API key or a web session, resolved with a short cache.

Keys are looked up by their visible prefix and checked against the stored hash. A key
found is cached for ``CACHE_S`` seconds, so a revocation on another gateway replica takes
effect within that time (on this one, at once). Last-used times are written in batches.

A web session's access token names its session; the session's state (revoked or not) and
its user are cached the same ``CACHE_S`` seconds, so a logout, a refresh-token reuse, a
password change, disabling or a role change ends the session's access tokens at once on
the replica that did it and within ``CACHE_S`` on the others.

Users have a policy like keys (models, rpm, tpm, concurrency): a session obeys its user's;
a key obeys its own and its user's (:attr:`Principal.user_models`, ``user_limits``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

from enclave.auth.apikeys import matches, prefix_of
from enclave.auth.network import Allowlist, client_ip
from enclave.auth.ratelimit import Limits
from enclave.auth.tokens import decode
from enclave.config import Settings
from enclave.errors import AuthenticationFailed, ConfigError
from enclave.store.models import ApiKey, User
from enclave.store.repos import KeyRepo, Store
from enclave.store.sessions import SessionRepo, SessionState

log = logging.getLogger("enclave.auth")

CACHE_S = 2.0
TOUCH_EVERY_S = 5.0
REFUSED = "invalid or expired API key or session"  # never says which


@dataclass(frozen=True)
class Principal:
    user: str | None
    role: str | None
    key_prefix: str | None = None
    models: tuple[str, ...] = ()  # glob patterns the key may use; () = all
    limits: Limits | None = None
    allow: Allowlist | None = None
    user_models: tuple[str, ...] = ()  # the user's own patterns; () = all
    user_limits: Limits | None = None  # the user's, shared by all their keys and sessions
    session: str | None = None  # a web session's id (its tokens' ``sid``)


def limits_of(rpm: int | None, tpm: int | None, concurrency: int | None) -> Limits | None:
    return Limits(rpm=rpm, tpm=tpm, concurrency=concurrency) if rpm or tpm or concurrency else None


def user_limits(user: User) -> Limits | None:
    return limits_of(user.rpm, user.tpm, user.max_concurrency)


def auth_enabled(settings: Settings) -> bool:
    mode = settings.auth.mode
    return mode == "on" or (mode == "auto" and not is_loopback(settings.host))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Key:
    """What a call needs of a stored key, read once per cache period: the checks and the
    principal, built once instead of from the ORM row on every call."""

    secret_hash: str
    refused: bool  # revoked, or its user disabled
    expires_at: datetime | None
    principal: Principal

    broken: ConfigError | None = None  # raised once the secret matched, as before caching

    @classmethod
    def of(cls, key: ApiKey, prefix: str) -> _Key:
        refused = key.revoked_at is not None or key.user.disabled
        try:
            allow = Allowlist(key.allow) if key.allow else None
        except ConfigError as exc:  # kept, and raised for the key's owner only
            owner = Principal(key.user.name, None)  # for forget_sessions(user)
            return cls(key.secret_hash, refused, key.expires_at, owner, exc)
        principal = Principal(
            user=key.user.name,
            role=key.user.role,
            key_prefix=prefix,
            models=tuple(key.models),
            limits=limits_of(key.rpm, key.tpm, key.max_concurrency),
            allow=allow,
            user_models=tuple(key.user.models or ()),
            user_limits=user_limits(key.user),
        )
        return cls(key.secret_hash, refused, key.expires_at, principal)


class Gatekeeper:
    def __init__(self, settings: Settings, store: Store, secret: bytes) -> None:
        self.enabled = auth_enabled(settings)
        self.configure(settings)
        self.secret = secret
        self.keys = KeyRepo(store)
        self.sessions = SessionRepo(store)
        self._cache: dict[str, tuple[float, _Key]] = {}
        self._session_cache: dict[str, tuple[float, SessionState | None]] = {}
        self._touched: dict[str, datetime] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}  # lookups in flight (_once)
        self._generation = 0  # counts forget*(): a lookup started before one caches nothing

    def configure(self, settings: Settings) -> None:
        """Take ``auth.allow`` and ``auth.trusted_proxies`` (at start and on a reload)."""
        allowlist = Allowlist(settings.auth.allow, name="auth.allow")
        trusted = Allowlist(settings.auth.trusted_proxies, name="auth.trusted_proxies")
        self.allowlist, self.trusted = allowlist, trusted

    def client_ip(self, scope: Scope) -> str:
        peer = scope.get("client")
        address = peer[0] if peer else None
        forwarded = [
            part.strip()
            for key, value in scope.get("headers", [])
            if key == b"x-forwarded-for"
            for part in value.decode("latin-1").split(",")
        ]
        return client_ip(address, forwarded, self.trusted) or "unknown"

    async def principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("an API key is required: Authorization: Bearer sk-enc-...")
        if prefix_of(token) is not None:
            return await self._by_key(token)
        return await self._by_session(token)

    def forget(self, prefix: str) -> None:
        """Drop a cached key at once (it was revoked or rotated here)."""
        self._cache.pop(prefix, None)
        self._drop_lookups()

    def _drop_lookups(self) -> None:
        """Calls from now on read afresh: a lookup in flight may hold the state from
        before the change, so it is no longer shared, and it caches nothing."""
        self._generation += 1
        self._loading.clear()

    def forget_sessions(self, user: str | None = None, session: str | None = None) -> None:
        """Drop cached session states at once: one session, or every session of ``user``
        (it was logged out, or the user changed, here). Keys of ``user`` too: their user's
        policy and state are cached with them."""
        self._drop_lookups()
        self._session_cache.pop(session or "", None)
        if user is not None:
            for sid, (_, state) in list(self._session_cache.items()):
                if state is not None and state.user.name == user:
                    self._session_cache.pop(sid, None)
            for prefix, (_, key) in list(self._cache.items()):
                if key.principal.user == user:
                    self._cache.pop(prefix, None)

    async def _by_key(self, token: str) -> Principal:
        prefix = prefix_of(token) or ""
        key = await self._key(prefix)
        now = datetime.now(UTC)
        if (
            key is None
            or not matches(key.secret_hash, token)
            or key.refused
            or (key.expires_at is not None and key.expires_at <= now)
        ):
            raise AuthenticationFailed(REFUSED)
        if key.broken is not None:  # its stored allowlist does not parse
            raise key.broken
        self._touched[prefix] = now
        return key.principal

    async def _key(self, prefix: str) -> _Key | None:
        cached = self._cache.get(prefix)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        found: _Key | None = await self._once(f"key:{prefix}", lambda: self._load_key(prefix))
        return found

    async def _load_key(self, prefix: str) -> _Key | None:
        generation = self._generation
        row = await self.keys.by_prefix(prefix)
        if row is None:
            return None
        key = _Key.of(row, prefix)
        if generation == self._generation:
            self._cache[prefix] = (time.monotonic(), key)
        return key

    async def _once(self, name: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """One lookup for concurrent misses of one name: the first call starts it, the
        others wait for the same result (a burst of new connections with one key, or one
        session, would otherwise query the database once each). The lookup runs as its
        own task, so a caller that goes away does not cancel it for the others."""
        task = self._loading.get(name)
        if task is None:
            task = asyncio.ensure_future(load())
            self._loading[name] = task
            task.add_done_callback(lambda done: self._loaded(name, done))
        return await asyncio.shield(task)

    def _loaded(self, name: str, done: asyncio.Future[Any]) -> None:
        if self._loading.get(name) is done:
            del self._loading[name]
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone away

    async def _by_session(self, token: str) -> Principal:
        try:
            claims = decode(self.secret, token, "access")
        except AuthenticationFailed:
            raise AuthenticationFailed(REFUSED) from None  # the same words as for keys
        state = await self._session(claims.session)
        if state is None or state.revoked:
            raise AuthenticationFailed(REFUSED)
        user = state.user
        if user.disabled or user.name != claims.user or user.role != claims.role:
            raise AuthenticationFailed(REFUSED)
        return Principal(
            user=user.name,
            role=user.role,
            session=claims.session,
            user_models=tuple(user.models or ()),
            user_limits=user_limits(user),
        )

    async def _session(self, sid: str) -> SessionState | None:
        cached = self._session_cache.get(sid)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        state: SessionState | None = await self._once(
            f"session:{sid}", lambda: self._load_session(sid)
        )
        return state

    async def _load_session(self, sid: str) -> SessionState | None:
        generation = self._generation
        state = await self.sessions.state(sid)
        if len(self._session_cache) > 10_000:  # forged ids cannot grow it without bound
            self._session_cache.clear()
        if generation == self._generation:
            self._session_cache[sid] = (time.monotonic(), state)
        return state

    async def flush_touches(self) -> None:
        """Write the keys' last-used times gathered since the last flush."""
        if self._touched:
            touched, self._touched = self._touched, {}
            await self.keys.touch(touched)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_EVERY_S)
            try:
                await self.flush_touches()
            except Exception:
                log.exception("could not record when keys were last used")
