"""Sign-in with the company directory (LDAP / Active Directory), with ``ldap3``.

:meth:`Directory.authenticate` finds the user's DN with the search account, binds as that
DN with the password given (the directory checks it; enclave never sees a hash), reads
the user's groups (the ``memberOf`` attribute, or a search under ``group_base``) and maps
them to a role with ``auth.ldap.role_map``. The name typed is escaped before it goes into
a filter, so ``*`` or ``)(uid=*`` match nothing but themselves.

ldap3 is synchronous: each sign-in runs in a thread of a small pool of its own
(``auth.ldap.max_concurrency`` threads; more sign-ins wait for a slot, at most
``timeout_s``), and every connect and answer is bounded by ``timeout_s``, so a slow or
dead directory holds a few threads for a bounded time and never the event loop. The
servers of ``urls`` are tried in order; the first that answers is used for the whole
sign-in. ldap3 is imported only when a directory is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import ssl
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from enclave.errors import DirectoryUnavailable

if TYPE_CHECKING:
    from enclave.ldapconfig import LdapSettings

Role = Literal["admin", "user"]
T = TypeVar("T")


@dataclass(frozen=True)
class DirectoryUser:
    """Who the directory says signed in: the local name, the DN, groups and role."""

    name: str
    dn: str
    groups: tuple[str, ...]
    role: Role | None  # None: in no mapped group, and no default_role


@dataclass(frozen=True)
class Answer:
    """The directory's verdict: ``user`` when the password was right, else a reason."""

    user: DirectoryUser | None
    reason: str = ""


def load() -> None:
    """Import ldap3 once. Its pyasn1 imports use names pyasn1 deprecates; the warning is
    theirs, not ours, and would otherwise reach whoever runs with warnings as errors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3\.")
        import ldap3  # noqa: F401


def normal_dn(dn: str) -> str:
    """A DN compared case-insensitively and without spaces around ``,`` and ``=``."""
    load()
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return dn.strip().lower()
    return ",".join(f"{attr.strip().lower()}={value.strip().lower()}" for attr, value, _ in parts)


def first_value(dn: str) -> str:
    """The value of a DN's first part: a group's cn (``cn=staff,ou=groups`` → ``staff``)."""
    head = normal_dn(dn).split(",", 1)[0]
    return head.split("=", 1)[1] if "=" in head else head


def role_of(
    groups: tuple[str, ...], role_map: dict[str, Role], default: Role | None
) -> Role | None:
    """The role the groups give (``admin`` wins over ``user``), else ``default``."""
    wanted = {
        normal_dn(key) if "=" in key else key.strip().lower(): r for key, r in role_map.items()
    }
    found = {wanted.get(normal_dn(g)) or wanted.get(first_value(g)) for g in groups}
    if "admin" in found:
        return "admin"
    return "user" if "user" in found else default


class Directory:
    """The directory of ``settings``; :meth:`aclose` stops its threads."""

    def __init__(self, settings: LdapSettings) -> None:
        load()
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="ldap")

    async def authenticate(self, username: str, password: str) -> Answer:
        """Check ``username`` and ``password`` with the directory (an empty password is
        refused before any bind: many directories take it as an anonymous bind)."""
        if not password:
            return Answer(None, "empty password")
        return await self._run(lambda: _Session(self.settings).authenticate(username, password))

    async def lookup(self, username: str) -> Answer:
        """What the directory says of ``username`` now (found with the search account, its
        groups and role), without a password: a session's refresh re-checks its user."""
        return await self._run(lambda: _Session(self.settings).authenticate(username, None))

    async def _run(self, work: Callable[[], T]) -> T:
        cfg = self.settings
        try:
            await asyncio.wait_for(self._slots.acquire(), cfg.timeout_s)
        except TimeoutError:
            raise DirectoryUnavailable(
                f"the company directory is busy: {cfg.max_concurrency} sign-ins at once "
                f"(auth.ldap.max_concurrency) for over {cfg.timeout_s:g} s (auth.ldap.timeout_s)"
            ) from None
        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        future.add_done_callback(lambda _: self._slots.release())  # when the thread ends
        # Each connect and answer is bounded by timeout_s inside; this bounds the total.
        total = cfg.timeout_s * (2 * len(cfg.urls) + 6)
        try:
            return await asyncio.wait_for(asyncio.shield(future), total)
        except TimeoutError:
            raise DirectoryUnavailable(
                f"the company directory ({', '.join(cfg.urls)}) did not finish a sign-in in "
                f"{total:g} s (auth.ldap.timeout_s={cfg.timeout_s:g})"
            ) from None

    def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Session:
    """One sign-in, synchronous (it runs in a thread): connections to one server."""

    def __init__(self, settings: LdapSettings) -> None:
        self.cfg = settings

    def authenticate(self, username: str, password: str | None) -> Answer:
        """The user, checked with ``password`` (``None``: only looked up)."""
        from ldap3.utils.conv import escape_filter_chars

        service, server = self._service()
        try:
            query = self.cfg.user_filter.replace("{username}", escape_filter_chars(username))
            attrs = [self.cfg.name_attribute, "memberOf"]
            found = self._search(service, self.cfg.user_base, query, attrs, limit=2)
            if len(found) != 1:
                return Answer(None, "no such user" if not found else "several users match")
            dn, values = found[0]
            if password is not None and not self._bind_as(server, dn, password):
                return Answer(None, "wrong password")
            groups = self._groups(service, dn, values)
        finally:
            _close(service)
        names = values.get(self.cfg.name_attribute.lower()) or [username]
        role = role_of(groups, dict(self.cfg.role_map), self.cfg.default_role)
        return Answer(DirectoryUser(str(names[0]), dn, groups, role))

    def _service(self) -> tuple[Any, Any]:
        """A connection bound as the search account to the first server that answers."""
        from ldap3.core.exceptions import LDAPException

        cfg, problems = self.cfg, []
        for url in cfg.urls:
            server = self._server(url)
            password = cfg.bind_password.get_secret_value() if cfg.bind_password else None
            conn = self._connection(server, cfg.bind_dn, password)
            try:
                self._open(conn)
                bound = conn.bind()
            except LDAPException as exc:
                said = _say(exc)
                hint = (
                    " (auth.ldap.ca_file, auth.ldap.verify)"
                    if "CERTIFICATE" in said.upper()
                    else ""
                )
                problems.append(f"{url}: {said}{hint}")
                _close(conn)
                continue
            if not bound:
                _close(conn)
                raise DirectoryUnavailable(
                    f"the company directory {url} refused the search account "
                    f"(auth.ldap.bind_dn): {conn.result.get('description')}"
                )
            return conn, server
        raise DirectoryUnavailable(
            f"the company directory cannot be reached (auth.ldap.urls): {'; '.join(problems)}"
        )

    def _bind_as(self, server: Any, dn: str, password: str) -> bool:
        """Whether the directory accepts ``password`` for ``dn``."""
        from ldap3.core.exceptions import LDAPCommunicationError, LDAPException

        conn = self._connection(server, dn, password)
        try:
            self._open(conn)
            return bool(conn.bind())
        except LDAPCommunicationError as exc:
            raise DirectoryUnavailable(
                f"the company directory {server.name} failed during sign-in: {_say(exc)}"
            ) from None
        except LDAPException:
            return False
        finally:
            _close(conn)

    def _groups(self, conn: Any, dn: str, values: dict[str, list[Any]]) -> tuple[str, ...]:
        from ldap3.utils.conv import escape_filter_chars

        if self.cfg.groups == "memberof":
            return tuple(str(g) for g in values.get("memberof", []))
        query = self.cfg.group_filter.replace("{dn}", escape_filter_chars(dn))
        base = self.cfg.group_base or self.cfg.user_base
        return tuple(found for found, _ in self._search(conn, base, query, ["cn"], limit=0))

    def _search(
        self, conn: Any, base: str, query: str, attrs: list[str], *, limit: int
    ) -> list[tuple[str, dict[str, list[Any]]]]:
        from ldap3 import SUBTREE
        from ldap3.core.exceptions import LDAPException

        try:
            conn.search(base, query, SUBTREE, attributes=attrs, size_limit=limit,
                        time_limit=int(self.cfg.timeout_s) or 1)  # fmt: skip
        except LDAPException as exc:
            raise DirectoryUnavailable(
                f"the company directory failed a search: {_say(exc)}"
            ) from None
        result = conn.result.get("description")
        if result not in ("success", "sizeLimitExceeded", "noSuchObject"):
            raise DirectoryUnavailable(
                f"the company directory refused a search under {base}: {result}"
            )
        entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
        return [(e["dn"], _values(e.get("attributes", {}))) for e in entries]

    def _server(self, url: str) -> Any:
        from ldap3 import NONE, Server

        cfg = self.cfg
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        tls = _tls_class()(context)
        return Server(url, get_info=NONE, tls=tls, connect_timeout=cfg.timeout_s)

    def _connection(self, server: Any, user: str | None, password: str | None) -> Any:
        from ldap3 import Connection

        wait = math.ceil(self.cfg.timeout_s)  # ldap3 wants whole seconds here
        return Connection(server, user=user, password=password, read_only=True,
                          receive_timeout=wait, raise_exceptions=False)  # fmt: skip

    def _open(self, conn: Any) -> None:
        conn.open()
        if self.cfg.start_tls and not conn.server.ssl and not conn.start_tls():
            from ldap3.core.exceptions import LDAPStartTLSError

            raise LDAPStartTLSError(f"StartTLS refused: {conn.result.get('description')}")


@functools.cache
def _tls_class() -> type[Any]:
    """ldap3's ``Tls`` with the certificate and the host name checked by Python's own
    ``ssl`` (ldap3 checks names with ``ssl.match_hostname``, deprecated, gone in 3.12)."""
    from ldap3 import Tls

    class VerifiedTls(Tls):  # type: ignore[misc]
        def __init__(self, context: ssl.SSLContext) -> None:
            super().__init__(validate=context.verify_mode)
            self.context = context

        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            connection.socket = self.context.wrap_socket(
                connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
                server_hostname=connection.server.host,
            )  # fmt: skip

    return VerifiedTls


def _values(attributes: dict[str, Any]) -> dict[str, list[Any]]:
    """Attribute values as lists, keyed by the attribute's name in lower case."""
    return {
        key.lower(): list(value) if isinstance(value, list | tuple) else [value]
        for key, value in attributes.items()
    }


def _close(conn: Any) -> None:
    """Unbind and close: ldap3 leaves the socket of a failed connect open."""
    from ldap3.core.exceptions import LDAPException

    with contextlib.suppress(LDAPException, OSError):  # a broken connection: nothing to say
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.close()


def _say(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
