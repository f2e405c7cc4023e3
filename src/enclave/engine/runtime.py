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


def child_command(
    settings: EngineSettings, model: Path, port: int, draft: Path | None = None
) -> list[str]:
    command = [
        sys.executable, "-m", "enclave.engine.child",
        "--model", str(model),
        "--port", str(port),
        "--threads", str(settings.threads or cpu_threads()),
        "--ctx-size", str(settings.ctx_size),
        "--parallel", str(settings.parallel),
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
        draft: Path | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        port = settings.port or free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._context_length: int | None = None
        self.supervisor = EngineSupervisor(
            child_command(settings, model, port, draft),
            self.base_url,
            log_path=log_path,
            options=SupervisorOptions(startup_timeout=settings.startup_timeout_s),
            on_ready=self._learn_context,
        )
        client = make_client(self.base_url + "/v1", api_key=None, connect_timeout=5.0)
        self.upstream = HTTPUpstream(ENGINE_NAME, client, readiness=self.supervisor.state)

    def context_length(self) -> int:
        """Tokens one request may use, prompt included (llama.cpp's context per slot)."""
        return self._context_length or self.settings.ctx_size // self.settings.parallel

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
