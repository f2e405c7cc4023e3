"""``enclave serve --workers N``: N gateway processes on one port.

The parent binds N listening sockets to the address with ``SO_REUSEPORT`` (the kernel
spreads new connections over them), starts the embedded engine's child once, then one
worker process per socket: a whole gateway (``create_app`` under uvicorn) that serves
its socket and uses the parent's engine child as an upstream (it only follows its
health). The parent keeps every socket open, so connections queued on the socket of a
worker that died wait for its restart instead of being refused.

The workers share what replicas share (docs/replicas.md): the database (the SQLite
file or PostgreSQL), ``secret.key`` and the home, Redis for the rate limits. Without
Redis each worker would count a key's limits on its own and allow it N times its
rpm, so more than one worker with authentication on needs ``auth.rate_limits: redis``.

The parent restarts a worker that exits (with back-off), passes SIGHUP on (a config
reload), and on SIGTERM or SIGINT stops the workers (each finishes its calls in flight,
as one gateway does) and then the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from enclave.config import ConfigSource, Settings, apply_overrides
from enclave.engine.child import die_with_parent
from enclave.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

    from enclave.engine.runtime import Engine

log = logging.getLogger("enclave.gateway")

BACKLOG = 2048  # uvicorn's
STOP_MARGIN_S = 5.0  # past the workers' graceful shutdown, before they are killed


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with (pickled to its stdin by its parent)."""

    settings: Settings
    source: ConfigSource | None
    fd: int  # its listening socket, inherited
    index: int
    parent: int
    engine_model: Path | None


def check_workers(settings: Settings, count: int) -> None:
    """Refuse a pool whose workers could not share the rate limits."""
    from enclave.gateway.gatekeeper import auth_enabled

    if count < 1:
        raise ConfigError(f"--workers must be 1 or more, not {count}")
    if count > 1 and auth_enabled(settings) and settings.auth.rate_limits != "redis":
        raise ConfigError(
            f"--workers {count} with authentication on needs auth.rate_limits: redis "
            "(with memory, each worker would allow a key its whole limit)"
        )


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, in one ``SO_REUSEPORT`` group."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {host}: {exc.strerror}") from None
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


def serve_workers(
    settings: Settings, source: ConfigSource | None, count: int, *, insecure: bool = False
) -> None:
    """Run the pool until SIGTERM or SIGINT."""
    from enclave.gateway.serve import announce, engine_model, prepare

    check_workers(settings, count)
    prepare(settings, insecure=insecure)
    model = engine_model(settings)
    sockets = bind_sockets(settings.host, settings.port, count)
    if model is not None:  # the child's port, fixed now so that every worker knows it
        from enclave.engine.runtime import free_port

        port = {"engine.port": settings.engine.port or free_port()}
        settings = apply_overrides(settings, **port)
        source = ConfigSource(source.path, {**source.overrides, **port}) if source else None
    announce(settings, count)
    try:
        asyncio.run(Pool(settings, source, sockets, model).run())
    finally:
        for sock in sockets:
            sock.close()


class Pool:
    """The parent: the engine child and one worker process per socket."""

    def __init__(
        self,
        settings: Settings,
        source: ConfigSource | None,
        sockets: list[socket.socket],
        model: Path | None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.sockets = sockets
        self.model = model
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._stopped = asyncio.Event()  # set with ``stopping``: ends a back-off at once
        self._spawning = asyncio.Lock()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
        engine = self._engine()
        if engine is not None:
            engine.start()
        keepers = [asyncio.create_task(self._keep(i)) for i in range(len(self.sockets))]
        try:
            await stop.wait()
        finally:
            await self._stop(keepers)
            if engine is not None:
                await engine.stop()
        log.info("all workers stopped")

    def _engine(self) -> Engine | None:
        if self.model is None:
            return None
        from enclave.engine.runtime import Engine
        from enclave.engine.speculative import draft_model

        cfg, log_path = self.settings.engine, self.settings.logs_dir / "engine.log"
        return Engine(cfg, self.model, log_path=log_path, draft=draft_model(self.settings))

    def forward(self, sig: int) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    async def _keep(self, index: int) -> None:
        """Run worker ``index``, and again whenever it exits, until the pool stops."""
        from enclave.engine.supervisor import Backoff

        backoff, failures = Backoff(), 0
        while not self.stopping:
            started = time.monotonic()
            process = await self._run_once(index)
            if self.stopping:
                return
            ran = time.monotonic() - started
            failures = 1 if ran >= backoff.stable_after else failures + 1
            delay = backoff.delay(failures)
            if process is not None:
                log.warning(
                    "worker %d (pid %d) exited with code %s; restarting it in %.0fs",
                    index, process.pid, process.returncode, delay,
                )  # fmt: skip
            with contextlib.suppress(TimeoutError):  # a stop does not wait for the back-off
                await asyncio.wait_for(self._stopped.wait(), delay)

    async def _run_once(self, index: int) -> asyncio.subprocess.Process | None:
        """Start worker ``index`` and wait for it to exit (None: it could not start)."""
        try:
            process = await self._spawn(index)
        except OSError as exc:  # fork or pipe refused: the keeper tries again later
            log.error("worker %d could not be started: %s", index, exc)
            return None
        if self.stopping:  # started while the pool stopped: it missed the SIGTERM
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await process.wait()
        return process

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        sock = self.sockets[index]
        spec = WorkerSpec(self.settings, self.source, sock.fileno(), index, os.getpid(), self.model)
        # The worker starts with SIGHUP blocked (the mask is inherited): one passed on
        # before its app listens for it waits, instead of ending it (SIGHUP's default).
        # One spawn at a time, so that each puts back the parent's own mask.
        async with self._spawning:
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
                    pass_fds=[sock.fileno()],
                )  # fmt: skip
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(spec))
        await process.stdin.drain()
        process.stdin.close()
        self.processes[index] = process
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

    async def _stop(self, keepers: list[asyncio.Task[None]]) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after the grace."""
        from enclave.gateway.serve import GRACEFUL_S

        self.stopping = True
        self._stopped.set()
        self.forward(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=GRACEFUL_S + STOP_MARGIN_S)
        for process in self.processes.values():
            if process.returncode is None:
                log.warning("worker pid %d ignored SIGTERM; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


# -- the worker ------------------------------------------------------------------------


def run_worker(spec: WorkerSpec) -> None:
    """Serve ``spec``'s socket with a whole gateway until SIGTERM or SIGINT."""
    import uvicorn

    from enclave.gateway.app import create_app
    from enclave.gateway.serve import raise_file_limit, setup_logging, uvicorn_options
    from enclave.gateway.services import build_services

    # SIGHUP stays blocked (see Pool._spawn) until the app listens for it; without a
    # config file to reload, this handler takes it (not SIG_IGN: children inherit that)
    signal.signal(signal.SIGHUP, _no_reload)
    die_with_parent(spec.parent)
    os.umask(0o077)
    settings = _current(spec)
    setup_logging(settings)
    raise_file_limit()
    services = build_services(settings, engine_model=spec.engine_model, attach_engine=True)
    app = create_app(settings, services=services, source=spec.source)
    sock = socket.socket(fileno=spec.fd)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    _server(config).run(sockets=[sock])


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, that lets SIGHUP in once the app has started (and handles it)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # the app's startup included
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # one held: reloaded

    return Server(config)


def _current(spec: WorkerSpec) -> Settings:
    """The config the running workers have: the file read again (a worker restarted after
    a reload must not serve the config the pool started with), but what only a restart
    applies as the parent has it (every worker on one database, home and engine)."""
    if spec.source is None:
        return spec.settings
    from enclave.gateway.reload import keep_running

    try:
        return keep_running(spec.source.load(), spec.settings)[0]
    except ConfigError as exc:
        log.error("worker %d: the config does not load, so it starts with the pool's: %s",
                  spec.index, exc)  # fmt: skip
        return spec.settings


def _no_reload(_signum: int, _frame: object) -> None:
    log.warning("SIGHUP ignored: no config file to reload")


if __name__ == "__main__":
    # the stdin pipe of the parent that started this process: nobody else writes it
    run_worker(pickle.load(sys.stdin.buffer))  # noqa: S301
