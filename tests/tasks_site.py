"""A gateway for the agent tasks' control-channel tests (issue 15): authentication on,
SQLite, the fake upstream, an administrator and two users, each with an API key, and the
tasks they start (a ``sleep`` with progress, a no-op)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

PASSWORD = "a-users-long-password"
TERMINAL = ("succeeded", "failed", "cancelled")


def nap(seconds: float, name: str = "nap") -> dict[str, Any]:
    """A task of one ``sleep`` step with a progress event a second."""
    step = {"id": "nap", "kind": "sleep", "seconds": seconds, "progress": True}
    params = {"note": {"type": "string", "default": ""}}
    return {"name": name, "description": "wait, reporting progress", "params": params,
            "steps": [step]}  # fmt: skip


@dataclass
class Site:
    gateway: Gateway
    keys: dict[str, str]  # user → API key: root (admin), alice, bob

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def ws(self) -> str:
        return self.gateway.url.replace("http://", "ws://") + "/api/tasks/ws"

    def call(self, method: str, path: str, who: str | None, status: int = 200, **kw: Any) -> Any:
        """One call as ``who`` (its key; ``None``: no credentials), which must answer
        ``status``; its JSON."""
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        headers |= kw.pop("headers", {})
        reply = httpx.request(method, self.url + path, headers=headers, trust_env=False,
                              timeout=60, **kw)  # fmt: skip
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        return (
            reply.json()
            if reply.content and "json" in reply.headers.get("content-type", "")
            else reply
        )

    def start(self, who: str, body: dict[str, Any]) -> dict[str, Any]:
        run: dict[str, Any] = self.call("POST", "/api/runs", who, 202, json=body)
        return run

    def wait(self, run_id: str, who: str = "root", timeout: float = 60.0,
             until: tuple[str, ...] = TERMINAL) -> dict[str, Any]:  # fmt: skip
        """Poll the run until its status is one of ``until``: the run."""
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = self.call("GET", f"/api/runs/{run_id}", who)
            if run["status"] in until:
                return run
            assert time.monotonic() < deadline, f"run {run_id} stayed {run['status']}"
            time.sleep(0.1)

    def login(self, user: str) -> str:
        reply = httpx.post(self.url + "/api/auth/login", trust_env=False, timeout=30,
                           json={"username": user, "password": PASSWORD})  # fmt: skip
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["access_token"]
        return token


@contextmanager
def tasks_site(home: Path, fake: FakeUpstream, **config: Any) -> Iterator[Site]:
    """The gateway, its users and keys, and the tasks ``nap`` (3 s) and ``long`` (60 s)."""
    settings = {
        "auth": {"mode": "on", "trusted_proxies": ["127.0.0.1/32"],
                 "allow": ["127.0.0.0/8", "10.0.0.0/8"]},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
        "tasks": {"concurrency": 8, "per_user_running": 8, "poll_interval_s": 0.2},
        **config,
    }  # fmt: skip
    with run_gateway(home, settings) as gateway:
        keys = {}
        for user, role in (("root", "admin"), ("alice", "user"), ("bob", "user")):
            add_user(gateway, user, role, PASSWORD)
            made = cli(gateway, "keys", "create", "--user", user, "--name", "tasks")
            assert made.returncode == 0, made.stderr
            keys[user] = made.stdout.splitlines()[0].strip()
        site = Site(gateway, keys)
        site.call("POST", "/api/tasks", "root", 201, json=nap(3))
        site.call("POST", "/api/tasks", "root", 201, json=nap(60, "long"))
        yield site
