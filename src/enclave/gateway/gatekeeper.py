"""Who is calling: an API key or a web session, resolved with a short cache.

Keys are looked up by their visible prefix and checked against the stored hash. A key
found is cached for ``CACHE_S`` seconds, so a revocation on another gateway replica takes
effect within that time (on this one, at once). Last-used times are written in batches.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.types import Scope

from enclave.auth.apikeys import matches, prefix_of
from enclave.auth.network import Allowlist, client_ip
from enclave.auth.ratelimit import Limits
from enclave.auth.tokens import decode
from enclave.config import Settings
from enclave.errors import AuthenticationFailed
from enclave.store.models import ApiKey
from enclave.store.repos import KeyRepo, Store, UserRepo

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


class Gatekeeper:
    def __init__(self, settings: Settings, store: Store, secret: bytes) -> None:
        self.enabled = auth_enabled(settings)
        self.configure(settings)
        self.secret = secret
        self.users = UserRepo(store)
        self.keys = KeyRepo(store)
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._touched: dict[str, datetime] = {}

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

    async def _by_key(self, token: str) -> Principal:
        prefix = prefix_of(token) or ""
        key = await self._key(prefix)
        now = datetime.now(UTC)
        if (
            key is None
            or not matches(key.secret_hash, token)
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
            or key.user.disabled
        ):
            raise AuthenticationFailed(REFUSED)
        self._touched[prefix] = now
        limits = None
        if key.rpm or key.tpm or key.max_concurrency:
            limits = Limits(rpm=key.rpm, tpm=key.tpm, concurrency=key.max_concurrency)
        return Principal(
            user=key.user.name,
            role=key.user.role,
            key_prefix=prefix,
            models=tuple(key.models),
            limits=limits,
            allow=Allowlist(key.allow) if key.allow else None,
        )

    async def _key(self, prefix: str) -> ApiKey | None:
        cached = self._cache.get(prefix)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        key = await self.keys.by_prefix(prefix)
        if key is not None:
            self._cache[prefix] = (time.monotonic(), key)
        return key

    async def _by_session(self, token: str) -> Principal:
        try:
            claims = decode(self.secret, token, "access")
        except AuthenticationFailed:
            raise AuthenticationFailed(REFUSED) from None  # the same words as for keys
        user = await self.users.get(claims.user)
        if user is None or user.disabled:
            raise AuthenticationFailed(REFUSED)
        return Principal(user=user.name, role=user.role)

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
