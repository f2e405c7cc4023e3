"""Start the real ``enclave serve`` for tests, on a free loopback port."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fakes.procs import RunningProcess, free_port, run_process

ENCLAVE = str(Path(sys.executable).parent / "enclave")
ASK = str(Path(sys.executable).parent / "ask")


@dataclass
class Gateway:
    url: str  # http://127.0.0.1:P
    running: RunningProcess
    home: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.running.log.read_text(errors="replace")


@contextmanager
def run_gateway(
    home: Path,
    config: Mapping[str, Any],
    *,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    health: str | None = "/health",
    timeout: float = 60.0,
) -> Iterator[Gateway]:
    """``enclave --config FILE serve`` with ``config`` written to FILE; ENCLAVE_HOME=home."""
    port = free_port()
    path = home / "enclave.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"port": port, **config}))
    cmd = [ENCLAVE, "--config", str(path), "serve", *args]
    full_env = {"ENCLAVE_HOME": str(home), **(env or {})}
    url = f"http://127.0.0.1:{port}"
    with run_process(cmd, full_env, url + health if health else None, timeout) as running:
        yield Gateway(url, running, home)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files in ``folder``), made by openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def run_tls_gateway(home: Path, config: Mapping[str, Any]) -> Iterator[tuple[str, Path]]:
    """A gateway serving HTTPS with a self-signed certificate: its https URL and the
    certificate, once it answers ``/health`` (200, or 503 while it has no model)."""
    cert, key = self_signed(home.parent)
    with run_gateway(home, config, args=("--tls-cert", str(cert), "--tls-key", str(key)),
                     health=None) as gateway:  # fmt: skip
        url = gateway.url.replace("http://", "https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(url + "/health", verify=trusted, trust_env=False)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the TLS gateway never answered"
                time.sleep(0.1)
        assert reply.status_code in (200, 503)
        yield url, cert


def cli(
    gateway: Gateway, *args: str, stdin: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``enclave --config FILE ARGS`` on the gateway's config and home (its database)."""
    env = {**os.environ, "ENCLAVE_HOME": str(gateway.home)}
    return subprocess.run(
        [ENCLAVE, "--config", str(gateway.home / "enclave.yaml"), *args],
        input=stdin, text=True, capture_output=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


def add_user(gateway: Gateway, name: str, role: str, password: str) -> None:
    """``enclave users add NAME --role ROLE --password-stdin``, which must succeed."""
    added = cli(gateway, "users", "add", name, "--role", role, "--password-stdin",
                stdin=password + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr


def audit_records(gateway: Gateway) -> list[dict[str, Any]]:
    """The gateway's audit chain, as ``enclave audit export --format jsonl`` gives it."""
    done = cli(gateway, "audit", "export", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def health_of(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    reply = httpx.get(gateway.url + "/health", trust_env=False, timeout=5)
    body: dict[str, Any] = reply.json()
    return reply.status_code, body


def member_of(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(u for u in body["upstreams"] if u["name"] == name)
    return found


def wait_member(
    gateway: Gateway, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Poll ``/health`` until member ``name`` passes ``check``; its view is returned."""
    deadline = time.monotonic() + timeout
    while True:
        member = member_of(health_of(gateway)[1], name)
        if check(member):
            return member
        if time.monotonic() > deadline:
            raise TimeoutError(f"member {name} never got there; last seen: {member}")
        time.sleep(0.05)


def write_config(gateway: Gateway, settings: dict[str, Any]) -> None:
    """Replace the config file whole, the way editors and config managers do."""
    path = gateway.home / "enclave.yaml"
    port = yaml.safe_load(path.read_text())["port"]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump({"port": port, **settings}))
    temporary.replace(path)
