"""Several real ``enclave serve`` replicas behind a real nginx, as a deployment runs them.

The replicas share what a deployment shares: ONE config file (each gets its own
``--port`` on the command line, so a reload reads the same file everywhere), one
database (``database_url``), the signing key (``secret.key``: the first replica's is
copied into each home, as a Kubernetes Secret or a shared volume would give it), and
whatever the config points at (Redis, upstreams). Each has a home of its own (logs, its
witness file). The benchmark (bench/replicas.py) starts the same cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enclave.secretkey import load_or_create
from tests.fakes.nginx import Nginx, run_nginx
from tests.fakes.procs import HOST, RunningProcess, free_port, run_process, wait_http
from tests.gateway import ENCLAVE


@dataclass
class Replica:
    name: str
    port: int
    home: Path
    config: Path
    env: Mapping[str, str]
    stack: ExitStack
    running: RunningProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def witness(self) -> Path:
        return self.home / "witness" / "audit.witness"

    def start(self) -> None:
        """Start the process (not waiting for it: :meth:`wait`)."""
        cmd = [ENCLAVE, "--config", str(self.config), "serve", "--port", str(self.port)]
        env = {"ENCLAVE_HOME": str(self.home), **self.env}
        self.running = self.stack.enter_context(run_process(cmd, env))

    def wait(self, timeout: float = 90.0) -> None:
        assert self.running is not None
        wait_http(self.url + "/health", timeout, process=self.running.process)

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost node would."""
        assert self.running is not None
        self.running.process.kill()
        self.running.process.wait()

    def log(self) -> str:
        return self.running.log.read_text(errors="replace") if self.running else ""


@dataclass
class Cluster:
    base: Path
    config: Path
    replicas: list[Replica]
    nginx: Nginx
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def v1(self) -> str:
        return self.nginx.v1

    def write_config(self, settings: Mapping[str, Any]) -> None:
        """Replace the shared config file whole, the way config managers do."""
        self.settings = dict(settings)
        temporary = self.config.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(self.settings))
        temporary.replace(self.config)

    def cli(
        self, *args: str, stdin: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``enclave --config FILE ARGS`` on the cluster's config (its database), run as
        an operator would on the first replica's host."""
        env = {**os.environ, "ENCLAVE_HOME": str(self.replicas[0].home)}
        return subprocess.run(
            [ENCLAVE, "--config", str(self.config), *args],
            input=stdin, text=True, capture_output=True, env=env, timeout=timeout, check=False,
        )  # fmt: skip

    def logs(self) -> str:
        return "\n".join(f"--- {r.name} ---\n{r.log()[-3000:]}" for r in self.replicas)


@contextmanager
def run_cluster(
    base: Path,
    settings: Mapping[str, Any],
    replicas: int = 2,
    *,
    env: Mapping[str, str] | None = None,
    nginx_workers: int | str = 1,
) -> Iterator[Cluster]:
    """``replicas`` gateways on ``settings`` (one config file) behind nginx."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "enclave.yaml"
    config.write_text(yaml.safe_dump(dict(settings)))
    key = base / "r0" / "secret.key"
    load_or_create(key)
    with ExitStack() as stack:
        members = []
        for index in range(replicas):
            home = base / f"r{index}"
            home.mkdir(mode=0o700, exist_ok=True)
            if index:
                shutil.copy2(key, home / "secret.key")
            member = Replica(f"r{index}", free_port(), home, config, dict(env or {}), stack)
            members.append(member)
        for member in members:
            member.start()
        for member in members:
            member.wait()
        nginx = stack.enter_context(run_nginx([m.addr for m in members], workers=nginx_workers))
        yield Cluster(base, config, members, nginx, dict(settings))
