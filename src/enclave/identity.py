"""Users and API keys: the operations the CLI and the admin API share, each audited.

A command or route parses its input and calls one method here; this module checks,
stores (through the repositories) and writes the administrative audit record.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from enclave.auth.apikeys import new_key, parse_expiry
from enclave.auth.network import Allowlist
from enclave.auth.passwords import hash_password, verify_password
from enclave.auth.tokens import new_id
from enclave.errors import (
    AuthenticationFailed,
    ConfigError,
    Conflict,
    DirectoryUnavailable,
    Forbidden,
    InvalidRequest,
)
from enclave.store.repos import KeyRepo, Store, UserRepo
from enclave.store.sessions import LoginFailures, SessionRepo

if TYPE_CHECKING:
    from enclave.audit.chain import AuditEntry
    from enclave.audit.writer import AuditWriter
    from enclave.auth.ldap import Directory, DirectoryUser
    from enclave.store.models import ApiKey, User

Role = Literal["admin", "user"]
ROLES = ("admin", "user")
USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # as the admin API accepts them
LOGIN_REFUSED = "wrong user name or password"
SESSION_REFUSED = "invalid or expired session"


def directory_lock_key(name: str) -> str:
    """The name failed directory sign-ins are counted under, as a directory compares names
    (RFC 4518): without case, width or extra spaces, so ``ALICE``, `` alice`` and
    its full-width form share one count."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Actor:
    """Who performs an administrative action (for the audit record)."""

    user: str | None = None  # None: the command line on the server itself
    key_prefix: str | None = None
    client_ip: str | None = None
    request_id: str | None = None

    @property
    def name(self) -> str:
        return self.user or "cli"

    def record(
        self, action: str, detail: dict[str, Any], *, at: datetime | None = None, status: int = 200
    ) -> AuditEntry:
        """The audit record of ``action``, done by this actor ``at`` (default: now)."""
        from enclave.audit.chain import AuditEntry

        return AuditEntry(
            ts=(at or now()).isoformat(timespec="microseconds"), kind="admin", action=action,
            request_id=self.request_id, user=self.name, key_prefix=self.key_prefix,
            client_ip=self.client_ip, status=status, detail=detail,
        )  # fmt: skip


CLI = Actor()


@dataclass(frozen=True)
class KeySpec:
    user: str
    name: str
    expires: str = "never"
    models: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    allow: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UserPolicy:
    """What a user may do, like a key's scope: every key of the user and every web session
    of the user is bounded by it as well as by the key's own (the stricter wins). A field
    left ``None`` is not changed; ``0`` (or ``[]`` for models) means no limit."""

    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None

    def values(self) -> dict[str, Any]:
        """The columns to set: given fields only, ``0`` stored as ``None`` (no limit)."""
        found: dict[str, Any] = {}
        if self.models is not None:
            found["models"] = list(self.models)
        for name in ("rpm", "tpm", "max_concurrency"):
            value = getattr(self, name)
            if value is not None:
                if value < 0:
                    raise InvalidRequest(f"{name} must be 0 (no limit) or more", param=name)
                found[name] = value or None
        return found


@dataclass(frozen=True)
class KeyChange:
    """What to change of a key: ``None`` leaves a field; ``0`` removes a limit, ``[]``
    the model scope or the key's own allowlist."""

    name: str | None = None
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    allow: list[str] | None = None

    def values(self) -> dict[str, Any]:
        found = UserPolicy(self.models, self.rpm, self.tpm, self.max_concurrency).values()
        if self.name is not None:
            found["name"] = self.name
        if self.allow is not None:
            try:
                Allowlist(self.allow, name="allow")
            except ConfigError as exc:
                raise InvalidRequest(exc.message, param="allow") from None
            found["allow"] = [cidr.strip() for cidr in self.allow]
        return found


def _key_detail(key: ApiKey) -> dict[str, Any]:
    """What the ``keys.create`` audit record says of a key (never its secret)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "prefix": key.prefix,
        "name": key.name,
        "user": key.user.name,
        "models": key.models,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "max_concurrency": key.max_concurrency,
        "allow": key.allow,
        "created_at": when(key.created_at),
        "expires_at": when(key.expires_at),
        "revoked_at": when(key.revoked_at),
        "last_used_at": when(key.last_used_at),
    }


class Identity:
    def __init__(self, store: Store, audit: AuditWriter | None) -> None:
        self.users = UserRepo(store)
        self.keys = KeyRepo(store)
        self.sessions = SessionRepo(store)
        self.failures = LoginFailures(store)
        self.audit = audit

    # --- users -----------------------------------------------------------------------

    async def add_user(
        self, actor: Actor, name: str, role: str, password: str, policy: UserPolicy | None = None
    ) -> User:
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        values = (policy or UserPolicy()).values()
        user = await self.users.add(name, role, hash_password(password))
        if values:
            user = await self.users.change(name, **values)
        await self._audit(actor, "users.add", {"name": name, "role": role, **values})
        return user

    async def list_users(self) -> list[User]:
        return await self.users.list()

    async def set_user(
        self, actor: Actor, name: str, *, role: str | None = None, policy: UserPolicy | None = None
    ) -> User:
        """Change a user's role and policy. A new role revokes the user's web sessions
        (they carry the role they were issued with); a policy applies at the next call."""
        values = (policy or UserPolicy()).values()
        old = await self.users.get(name)
        if role is not None:
            values["role"] = role
        user = await self.users.change(name, **values)
        detail: dict[str, Any] = {"name": name, **values}
        if old is not None and role is not None and role != old.role:
            detail["sessions_revoked"] = await self.revoke_sessions(name, "role")
        await self._audit(actor, "users.set", detail)
        return user

    async def set_disabled(self, actor: Actor, name: str, disabled: bool) -> None:
        await self.users.set_disabled(name, disabled)
        detail: dict[str, Any] = {"name": name}
        if disabled:
            detail["sessions_revoked"] = await self.revoke_sessions(name, "disabled")
        await self._audit(actor, "users.disable" if disabled else "users.enable", detail)

    async def set_password(self, actor: Actor, name: str, password: str) -> None:
        """A new password; every web session of the user ends (API keys are kept). A user
        of the company directory has no password here: it is changed in the directory."""
        old = await self.users.get(name)
        if old is not None and old.source == "ldap":
            raise InvalidRequest(
                f"user {name!r} signs in with the company directory (auth.ldap): change "
                "the password in the directory, not in enclave",
                param="password",
            )
        await self.users.set_password(name, hash_password(password))
        revoked = await self.revoke_sessions(name, "password")
        await self.failures.clear(name)
        await self._audit(actor, "users.passwd", {"name": name, "sessions_revoked": revoked})

    async def revoke_sessions(self, name: str, why: str) -> int:
        return await self.sessions.revoke_user(name, why, now=now())

    # --- web sessions ----------------------------------------------------------------

    async def login(
        self, actor: Actor, name: str, password: str, directory: Directory | None = None
    ) -> User:
        """The user, if the password is right; every failure is the same 401, and audited
        under the name tried (whether or not a user has it). A name that is no local user
        is asked of ``directory`` (the company directory), when one is configured."""
        user = await self.users.get(name)
        tried = Actor(name, None, actor.client_ip, actor.request_id)
        if directory is not None and (user is None or user.source == "ldap"):
            return await self._directory_login(tried, name, password, directory)
        # Hash even for an unknown name, so the answer's timing does not tell names apart.
        right = verify_password(user.password_hash if user else None, password)
        if not right or user is None or user.disabled:
            await self._refuse(tried, name, {})
        await self.failures.clear(name)
        await self._audit(tried, "login", {"source": "local"})
        return user

    async def _refuse(
        self, tried: Actor, name: str, detail: dict[str, Any], counted: str | None = None
    ) -> NoReturn:
        """401 for ``name``, a failure counted under ``counted`` (default: the name)."""
        await self.failures.failed(counted or name, now())
        await self._audit(tried, "login.failed", {"name": name, **detail}, status=401)
        raise AuthenticationFailed(LOGIN_REFUSED)

    async def _directory_login(
        self, tried: Actor, name: str, password: str, directory: Directory
    ) -> User:
        """Sign in with the directory: its answer, then the local row of that user, made
        or given the role of the user's groups now (``source="ldap"``, no password)."""
        ldap = {"source": "ldap"}
        key = directory_lock_key(name)  # directories compare names without case
        try:
            answer = await directory.authenticate(name, password)
        except DirectoryUnavailable as exc:  # not the user's fault: no lockout count
            await self._audit(tried, "login.failed", {"name": name, **ldap, "reason": exc.message},
                              status=503)  # fmt: skip
            raise
        found = answer.user
        if found is None:
            await self._refuse(tried, name, {**ldap, "reason": answer.reason}, key)
        if not USER_NAME.fullmatch(found.name):
            await self._audit(tried, "login.failed", {"name": found.name[:80], **ldap,
                              "reason": "not a valid user name here"}, status=403)  # fmt: skip
            raise Forbidden(
                f"the directory names this user {found.name[:80]!r}: enclave user names are "
                f"1 to 64 letters, digits and . _ @ - (auth.ldap.name_attribute)"
            )
        row = await self.users.get(found.name)
        if row is not None and (row.source != "ldap" or row.disabled):
            why = "disabled here" if row.source == "ldap" else "a local user has this name"
            await self._refuse(tried, name, {**ldap, "reason": why}, key)
        who = Actor(found.name, None, tried.client_ip, tried.request_id)
        if found.role is None:
            await self._audit(who, "login.failed", {"name": found.name, **ldap,
                              "reason": "in no mapped group"}, status=403)  # fmt: skip
            raise Forbidden(
                f"{found.name} is in no directory group that gives a role here "
                "(auth.ldap.role_map), and auth.ldap.default_role is not set"
            )
        user = await self._provision(who, found, found.role, row)
        await self.failures.clear(key)
        await self._audit(who, "login", {**ldap, "role": found.role, "groups": list(found.groups)})
        return user

    async def _provision(
        self, who: Actor, found: DirectoryUser, role: str, row: User | None
    ) -> User:
        """The local row of a directory user, with ``role``: made at the first sign-in;
        a changed role ends the sessions issued with the old one."""
        if row is None:
            try:
                user = await self.users.add(found.name, role, None, source="ldap")
            except Conflict:  # made meanwhile: by a sign-in of the same user, or by hand
                again = await self.users.get(found.name)
                if again is None or again.source != "ldap" or again.disabled:
                    raise AuthenticationFailed(LOGIN_REFUSED) from None
                return await self.users.change(found.name, role=role)
            await self._audit(who, "users.add", {"name": found.name, "role": role,
                                                 "source": "ldap"})  # fmt: skip
            return user
        if row.role == role:
            return row
        user = await self.users.change(found.name, role=role)
        revoked = await self.revoke_sessions(found.name, "role")
        await self._audit(who, "users.set", {"name": found.name, "role": role, "source": "ldap",
                                             "sessions_revoked": revoked})  # fmt: skip
        return user

    async def open_session(self, user: User, ttl_s: int) -> tuple[str, str]:
        """A new session of ``user``: its id and its first refresh token's id."""
        sid, jti = new_id(), new_id()
        at = now()
        await self.sessions.open(user, sid, jti, now=at, expires_at=at + timedelta(seconds=ttl_s))
        return sid, jti

    async def refresh(
        self, actor: Actor, sid: str, jti: str, ttl_s: int, directory: Directory | None = None
    ) -> tuple[User, str]:
        """Spend refresh token ``jti`` of session ``sid``: the user and the next token's id.

        A token spent before is a stolen copy or a replay: the whole session (every token
        descended from that login) is revoked, and the attempt audited. A directory user
        is looked up again (:meth:`_recheck`): removed or re-roled there, the session ends.
        """
        new, at = new_id(), now()
        outcome = await self.sessions.rotate(
            sid, jti, new, now=at, expires_at=at + timedelta(seconds=ttl_s)
        )
        state = await self.sessions.state(sid)
        if outcome == "reused" and state is not None:
            who = Actor(state.user.name, None, actor.client_ip, actor.request_id)
            await self._audit(who, "session.reuse", {"session": sid[:8]}, status=401)
        if outcome != "rotated" or state is None or state.user.disabled:
            raise AuthenticationFailed(SESSION_REFUSED)
        if state.user.source == "ldap" and directory is not None:
            await self._recheck(actor, state.user, directory)
        return state.user, new

    async def _recheck(self, actor: Actor, user: User, directory: Directory) -> None:
        """End the sessions of a directory user the directory no longer gives this role
        (gone, in no mapped group, moved to another group). A directory that cannot be
        reached keeps the session: its users should not all be signed out by an outage."""
        try:
            answer = await directory.lookup(user.name)
        except DirectoryUnavailable:
            return
        found = answer.user
        role = found.role if found is not None else None
        if role == user.role:
            return
        who = Actor(user.name, None, actor.client_ip, actor.request_id)
        revoked = await self.revoke_sessions(user.name, "directory")
        if role is not None:
            await self.users.change(user.name, role=role)
        reason = answer.reason or ("in no mapped group" if role is None else f"role now {role}")
        await self._audit(who, "session.directory", {"name": user.name, "reason": reason,
                                                     "sessions_revoked": revoked})  # fmt: skip
        raise AuthenticationFailed(SESSION_REFUSED)

    async def logout(self, actor: Actor, sid: str) -> None:
        """End session ``sid``: its refresh token and its access tokens stop working."""
        await self.sessions.revoke(sid, "logout", now=now())
        await self._audit(actor, "logout", {"session": sid[:8]})

    # --- keys ------------------------------------------------------------------------

    async def create_key(self, actor: Actor, spec: KeySpec) -> tuple[str, ApiKey]:
        """A new key: the secret is returned this once and stored only as a hash."""
        life = parse_expiry(spec.expires)
        made = new_key()
        key = await self.keys.create(
            spec.user,
            name=spec.name,
            prefix=made.prefix,
            secret_hash=made.secret_hash,
            models=list(spec.models),
            rpm=spec.rpm,
            tpm=spec.tpm,
            max_concurrency=spec.max_concurrency,
            allow=list(spec.allow),
            expires_at=now() + life if life else None,
        )
        await self._audit(actor, "keys.create", {"prefix": key.prefix, **_key_detail(key)})
        return made.key, key

    async def list_keys(self, user: str | None = None) -> list[ApiKey]:
        return await self.keys.list(user)

    async def set_key(self, actor: Actor, prefix: str, change: KeyChange) -> ApiKey:
        """Change a key's name, scope, limits or allowlist (the secret stays); the
        gateway applies it at the key's next call once its cache forgets the key."""
        values = change.values()
        key = await self.keys.change(prefix, **values)
        await self._audit(actor, "keys.set", {"prefix": prefix, "user": key.user.name, **values})
        return key

    async def revoke_key(self, actor: Actor, prefix: str) -> ApiKey:
        key = await self.keys.revoke(prefix, now())
        await self._audit(actor, "keys.revoke", {"prefix": prefix, "user": key.user.name})
        return key

    async def rotate_key(self, actor: Actor, prefix: str) -> tuple[str, ApiKey]:
        """A new secret with the same owner, scopes and limits; the old key is revoked."""
        old = await self.keys.by_prefix(prefix)
        if old is None:
            await self.keys.revoke(prefix, now())  # raises the not-found error
            raise AssertionError("unreachable")
        remaining = None
        if old.expires_at is not None:
            remaining = max(int((old.expires_at - now()).total_seconds() // 60), 1)
        spec = KeySpec(
            user=old.user.name,
            name=old.name,
            expires=f"{remaining}m" if remaining else "never",
            models=list(old.models),
            rpm=old.rpm,
            tpm=old.tpm,
            max_concurrency=old.max_concurrency,
            allow=list(old.allow),
        )
        secret, new = await self.create_key(actor, spec)
        await self.revoke_key(actor, prefix)
        await self._audit(actor, "keys.rotate", {"old": prefix, "new": new.prefix})
        return secret, new

    # --- audit -----------------------------------------------------------------------

    async def audit_action(self, actor: Actor, action: str, detail: dict[str, Any]) -> None:
        """An administrative event that is not a user or key operation (a config reload)."""
        await self._audit(actor, action, detail)

    async def _audit(
        self, actor: Actor, action: str, detail: dict[str, Any], status: int = 200
    ) -> None:
        if self.audit is not None:
            await self.audit.write(actor.record(action, detail, status=status))
