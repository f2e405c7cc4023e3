"""The embedded engine as an upstream: the supervised llama.cpp child behind an HTTPUpstream.

The router does not know this is a local child process: it sees one more upstream.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from enclave.config import EngineSettings
from enclave.engine import speculative
from enclave.engine.sizing import Host, Sizing, kv_bytes_per_token, size
from enclave.engine.supervisor import EngineSupervisor, SupervisorOptions
from enclave.errors import EnclaveError
from enclave.upstream.openai import HTTPUpstream, make_client

log = logging.getLogger("enclave.engine")

ENGINE_NAME = "engine"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def engine_sizing(settings: EngineSettings, model: Path) -> Sizing:
    """The engine's slots and context: the settings', or sized from this host."""
    return size(settings.parallel, settings.ctx_size, host=Host.this(),
                kv_bytes_per_token=kv_bytes_per_token(model))  # fmt: skip


def child_command(
    settings: EngineSettings,
    model: Path,
    port: int,
    sizing: Sizing | None = None,
    draft: Path | None = None,
) -> list[str]:
    sizing = sizing or engine_sizing(settings, model)
    command = [
        sys.executable, "-m", "enclave.engine.child",
        "--model", str(model),
        "--port", str(port),
        "--threads", str(settings.threads or cpu_threads()),
        "--ctx-size", str(sizing.ctx_size),
        "--parallel", str(sizing.parallel),
        "--parent", str(os.getpid()),
    ]  # fmt: skip
    for name in settings.public_names():
        command += ["--alias", name]
    return command + speculative.child_args(settings, draft)


class Engine:
    """The llama.cpp child, its supervisor, and the upstream that talks to it."""

    def __init__(
        self,
        settings: EngineSettings,
        model: Path,
        *,
        log_path: Path | None,
        attach: bool = False,
        draft: Path | None = None,
    ) -> None:
        """With ``attach``, another process runs the child on ``settings.port`` (a worker
        of ``enclave serve --workers N``): this one only follows its health."""
        self.settings = settings
        self.model = model
        port = settings.port or free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._context_length: int | None = None
        self.sizing = engine_sizing(settings, model)
        log.info("engine: %s", self.sizing.why)
        self.supervisor = EngineSupervisor(
            [] if attach else child_command(settings, model, port, self.sizing, draft),
            self.base_url,
            log_path=log_path,
            options=SupervisorOptions(startup_timeout=settings.startup_timeout_s),
            on_ready=self._learn_context,
        )
        client = make_client(self.base_url + "/v1", api_key=None, connect_timeout=5.0)
        self.upstream = HTTPUpstream(ENGINE_NAME, client, readiness=self.supervisor.state)

    def context_length(self) -> int:
        """Tokens one request may use, prompt included (llama.cpp's context per slot)."""
        return self._context_length or self.sizing.slot_context

    async def _learn_context(self) -> None:
        try:
            models = await self.upstream.models()
            self._context_length = int(models[0]["meta"]["n_ctx"])
        except (EnclaveError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("could not read the engine's context length: %s", exc)

    def start(self) -> None:
        self.supervisor.start()

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self.upstream.aclose()
