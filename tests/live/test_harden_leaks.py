"""Issue 13 §5, smaller leaks, against a real gateway on loopback: the 404 for an unknown
model lists only what the key may use; ``/health`` shows its details to authenticated
callers only; the data directory is its owner's alone; a reload applies ``auth``'s
address rules and names what needs a restart."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, add_user, cli, run_gateway, write_config

ENGINE_OFF = {"enabled": False, "embeddings": False, "ocr": False}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with run_fake_upstream(name="a", models=["public-model", "secret-model"]) as fake:
        yield fake


@pytest.fixture(scope="module")
def site(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    home = tmp_path_factory.mktemp("leaks") / "home"
    (home / "logs").mkdir(parents=True)  # left readable by an older version
    (home / "logs").chmod(0o755)
    old_log = home / "logs" / "old.log"
    old_log.write_text("an older version's log\n")
    old_log.chmod(0o644)
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [
            {"name": "a", "base_url": upstream.base_url,
             "models": ["public-model", "secret-model"]},
        ],
    }  # fmt: skip
    previous = os.umask(0o022)  # the usual umask: files readable by everyone unless fixed
    try:
        with run_gateway(home, config) as gateway:
            add_user(gateway, "alice", "user", "alice-password-long")
            made = cli(gateway, "keys", "create", "--user", "alice", "--name", "t",
                       "--models", "public-model")  # fmt: skip
            assert made.returncode == 0, made.stderr
            yield gateway, made.stdout.splitlines()[0].strip()
    finally:
        os.umask(previous)


def get(gateway: Gateway, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(gateway.url + path, headers=headers, trust_env=False, timeout=10)


def test_the_404_for_an_unknown_model_lists_only_the_models_the_key_may_use(
    site: tuple[Gateway, str],
) -> None:
    gateway, key = site
    reply = httpx.post(
        gateway.v1 + "/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        trust_env=False,
        timeout=10,
    )
    assert reply.status_code == 404
    message = reply.json()["error"]["message"]
    assert "public-model" in message
    assert "secret-model" not in message  # today: listed although the key may not use it


def test_health_is_a_bare_status_without_a_key_and_detailed_with_one(
    site: tuple[Gateway, str], upstream: FakeUpstream
) -> None:
    gateway, key = site
    anonymous = get(gateway, "/health")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    assert upstream.base_url not in anonymous.text
    assert get(gateway, "/health", "sk-enc-not-a-key").json() == {"status": "ok"}
    detailed = get(gateway, "/health", key).json()
    assert detailed["status"] == "ok"
    assert [u["base_url"] for u in detailed["upstreams"]] == [upstream.base_url]
    shown = cli(gateway, "upstreams", "--api-key", key)
    assert shown.returncode == 0, shown.stderr
    assert "public-model" in shown.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_database_and_logs_are_the_owners_alone(
    site: tuple[Gateway, str],
) -> None:
    gateway, key = site
    assert get(gateway, "/v1/models", key).status_code == 200  # an access-log line
    home = gateway.home
    for folder in (home, home / "logs"):
        assert mode(folder) == 0o700, folder
    files = [home / "enclave.db", home / "logs" / "access.log", home / "logs" / "old.log"]
    files += [p for p in (home / "enclave.db-wal", home / "enclave.db-shm") if p.exists()]
    for path in files:
        assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}"


def wait_log(gateway: Gateway, text: str, after: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.log()[after:]:
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.05)


def test_a_reload_applies_the_auth_address_rules_and_names_what_needs_a_restart(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    def config(**auth: Any) -> dict[str, Any]:
        member = {"name": "a", "base_url": upstream.base_url, "models": ["public-model"]}
        return {"engine": ENGINE_OFF, "auth": auth, "upstreams": [member]}

    with run_gateway(tmp_path, config(allow=["127.0.0.1/32"])) as gateway:
        assert get(gateway, "/v1/models").status_code == 200
        mark = len(gateway.log())
        write_config(gateway, config(allow=["10.9.9.9/32"], mode="on"))
        wait_log(gateway, "config reloaded", mark)
        logged = gateway.log()[mark:]
        assert "config reloaded" in logged
        assert "auth.mode change(s) only on restart" in logged
        refused = get(gateway, "/v1/models")  # today: the old allowlist stays in force
        assert refused.status_code == 403
        assert "127.0.0.1 may not use this gateway" in refused.json()["error"]["message"]
