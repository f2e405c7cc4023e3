"""A real OpenLDAP server for tests: Debian's ``slapd`` on a free 127.0.0.1 port.

``LdapServer.start()`` writes a ``slapd.conf`` (mdb backend, the core, cosine,
inetorgperson and nis schemas, the memberof overlay, access rules that let only bound
users read and let no one read a password, TLS with a self-signed certificate for
127.0.0.1: ``ldaps://`` on a second port, StartTLS on the first) into a temporary
directory, loads the tree's skeleton and the search account with ``slapadd``, starts
``slapd`` in the foreground as a child process and waits (bounded) until it answers.
People and groups are then added over LDAP, so the memberof overlay gives each person
a ``memberOf`` attribute:

    alice (password alice-pw)  in cn=admins,ou=groups
    bob   (password bob-pw)    in cn=staff,ou=groups
    dave  (password dave-pw)   in cn=staff,ou=groups
    carol (password carol-pw)  in no group

The server gets SIGTERM if the test process dies (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.procs import HOST, free_port
from tests.gateway import self_signed

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=root,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=enclave,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}
MEMBERS = {"admins": ["alice"], "staff": ["bob", "dave"]}

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {base}/slapd.pid
TLSCertificateFile {base}/cert.pem
TLSCertificateKeyFile {base}/key.pem
database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {base}/db
maxsize 33554432
overlay memberof
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""

SKELETON = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: person
cn: enclave
sn: enclave
userPassword: {SERVICE_PASSWORD}
"""


class LdapUnavailable(RuntimeError):
    """slapd is not installed, or did not start."""


def available() -> bool:
    return SLAPD.is_file() and SLAPADD.is_file()


def person(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


@dataclass
class LdapServer:
    base: Path
    port: int  # ldap:// (StartTLS offered)
    tls_port: int  # ldaps://
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://{HOST}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://{HOST}:{self.tls_port}"

    @property
    def cert(self) -> Path:
        """The server's self-signed certificate (for 127.0.0.1): its own CA."""
        return self.base / "cert.pem"

    @classmethod
    def start(cls, timeout: float = 30.0) -> LdapServer:
        if not available():
            raise LdapUnavailable(f"{SLAPD} is not installed (apt-get install slapd ldap-utils)")
        base = Path(tempfile.mkdtemp(prefix="enclave-ldap-"))
        server = cls(base=base, port=free_port(), tls_port=free_port())
        try:
            server._configure()
            server._launch(timeout)
            server._populate()
        except BaseException:
            server.stop()
            raise
        return server

    def _configure(self) -> None:
        (self.base / "db").mkdir()
        self_signed(self.base)  # cert.pem and key.pem
        conf = CONF.format(base=self.base, suffix=SUFFIX, root_dn=ROOT_DN,
                           root_password=ROOT_PASSWORD)  # fmt: skip
        (self.base / "slapd.conf").write_text(conf, encoding="utf-8")
        (self.base / "skeleton.ldif").write_text(SKELETON, encoding="utf-8")
        done = subprocess.run(
            [str(SLAPADD), "-f", str(self.base / "slapd.conf"), "-l",
             str(self.base / "skeleton.ldif")],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise LdapUnavailable(f"slapadd failed: {done.stdout}{done.stderr}")

    def _launch(self, timeout: float) -> None:
        listen = f"{self.url}/ {self.tls_url}/"
        args = [str(SLAPD), "-f", str(self.base / "slapd.conf"), "-h", listen, "-d", "0"]
        if shutil.which("setpriv"):
            args = ["setpriv", "--pdeathsig", "TERM", "--", *args]
        with (self.base / "slapd.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise LdapUnavailable(
                    f"slapd exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                # A plain socket first: ldap3 leaves the socket of a refused connect open,
                # and its ResourceWarning would fail whichever test the collector runs in.
                with socket.create_connection((HOST, self.port), timeout=2):
                    pass
                self.admin().unbind()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise LdapUnavailable(f"slapd not ready in {timeout} s: {exc}") from exc
            time.sleep(0.05)

    def admin(self) -> Any:
        """A connection bound as the directory's root (raises when it cannot bind)."""
        from enclave.auth.ldap import load

        load()
        from ldap3 import Connection, Server

        server = Server(self.url, connect_timeout=2)
        return Connection(server, ROOT_DN, ROOT_PASSWORD, auto_bind=True, receive_timeout=5)

    def _populate(self) -> None:
        conn = self.admin()
        try:
            for uid, password in USERS.items():
                attrs = {"cn": uid.title(), "sn": uid.title(), "userPassword": password}
                _check(conn, conn.add(person(uid), ["inetOrgPerson"], attrs))
            for cn, uids in MEMBERS.items():
                members = [person(u) for u in uids]
                _check(conn, conn.add(group(cn), ["groupOfNames"], {"member": members}))
        finally:
            conn.unbind()

    def add_member(self, cn: str, uid: str) -> None:
        self._modify_member(cn, uid, "MODIFY_ADD")

    def remove_member(self, cn: str, uid: str) -> None:
        self._modify_member(cn, uid, "MODIFY_DELETE")

    def _modify_member(self, cn: str, uid: str, how: str) -> None:
        conn = self.admin()
        try:
            _check(conn, conn.modify(group(cn), {"member": [(how, [person(uid)])]}))
        finally:
            conn.unbind()

    def log_tail(self) -> str:
        try:
            return (self.base / "slapd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if process is not None:
            process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _check(conn: Any, ok: bool) -> None:
    if not ok:
        raise LdapUnavailable(f"LDAP change refused: {conn.result}")
