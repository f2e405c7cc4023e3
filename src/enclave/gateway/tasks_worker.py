"""A worker process without HTTP (``enclave tasks worker``): the task worker, the
scheduler and the reaper of :class:`~enclave.tasks.service.TaskService`, with the
router (and the embedded engine when enabled) for the steps' model calls, until SIGTERM
or SIGINT. Several of them share the work of one PostgreSQL database."""

from __future__ import annotations

import asyncio
import logging
import signal

from enclave.config import Settings

log = logging.getLogger("enclave.tasks")


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); runs in hand go back to the queue."""
    from enclave.gateway.serve import engine_model
    from enclave.gateway.services import build_services

    tasks = settings.tasks.model_copy(update={"enabled": True, "worker": True})
    settings = settings.model_copy(update={"tasks": tasks})
    services = build_services(settings, engine_model=engine_model(settings))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await services.start()
    worker = services.tasks.worker.id if services.tasks else "?"
    log.info("task worker %s started", worker)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        claims = services.tasks.repo.claims if services.tasks else "?"
        await services.aclose()
        log.info("task worker %s stopped (%s)", worker, claims)
