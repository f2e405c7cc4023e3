"""Identity and audit as an attacker and an auditor meet them: a real `enclave serve` with
authentication on, users and keys made with the real CLI, the openai SDK and httpx as
clients, the audit chain checked and tampered with on the real SQLite file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.procs import FakeUpstream, free_port, run_process
from tests.gateway import (
    ENCLAVE,
    Gateway,
    add_user,
    audit_records,
    cli,
    run_gateway,
    run_tls_gateway,
)

pytestmark = pytest.mark.fake_upstream(models=["fake-model", "other-model"], vision=True)

PROXY = "127.0.0.2"  # a second loopback address: the trusted reverse proxy
ADMIN_PASSWORD = "correct horse battery staple"
BOB_PASSWORD = "tr0ub4dor&3-but-longer"
OPEN = {"/health", "/api/auth/login", "/api/auth/refresh"}
CONSOLE = {"/", "/admin", "/ui/x"}  # the web console's pages and files: no data in them
TINY_PNG = (  # 1 x 1 pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def settings(fake: FakeUpstream) -> dict[str, Any]:
    return {
        "auth": {
            "mode": "on",
            "allow": ["127.0.0.1/32", "10.0.0.0/8"],
            "trusted_proxies": [f"{PROXY}/32"],
            "login_attempts": 3,
        },
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {
                "name": "fake",
                "base_url": fake.base_url,
                "models": ["fake-model", "other-model"],
                "vision": True,
            }
        ],
    }


def make_key(gateway: Gateway, *args: str) -> str:
    made = cli(gateway, "keys", "create", *args)
    assert made.returncode == 0, made.stderr
    assert "cannot be shown again" in made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("identity"), settings(fake)) as gw:
        for name, role, password in (("alice", "admin", ADMIN_PASSWORD),
                                     ("bob", "user", BOB_PASSWORD)):  # fmt: skip
            add_user(gw, name, role, password)
        yield gw


@pytest.fixture(scope="module")
def bob_key(gateway: Gateway) -> str:
    return make_key(gateway, "--user", "bob", "--name", "laptop", "--models", "fake*")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(
    gateway: Gateway,
    key: str | None,
    model: str = "fake-model",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {**(auth(key) if key else {}), **(extra or {})}
    url = gateway.v1 + "/chat/completions"
    return httpx.post(url, json=body, headers=headers, trust_env=False, timeout=10)


def error_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


# --- who may call ----------------------------------------------------------------------


def app_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the real app, built from settings as `serve` builds it."""
    from enclave.config import Settings
    from enclave.gateway.app import create_app

    app = create_app(Settings(engine={"enabled": False, "embeddings": False, "ocr": False}))
    found = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))  # type: ignore[attr-defined]
    return found


def test_every_route_but_health_and_login_refuses_anonymous_calls(gateway: Gateway) -> None:
    routes = app_routes()
    assert len(routes) > 15
    assert {path for _, path in routes} >= {"/v1/chat/completions", "/api/admin/keys", "/metrics"}
    for method, path in routes:
        reply = httpx.request(method, gateway.url + path, json={}, trust_env=False, timeout=10)
        if path in OPEN:
            assert reply.status_code != 401 or path != "/health"
            continue
        if path in CONSOLE:
            assert reply.status_code in (200, 404), (method, path)  # 404: no file named x
            continue
        error = error_of(reply, 401)
        assert error["type"] == "authentication_error", (method, path)


def test_wrong_expired_and_revoked_keys_get_the_same_401(gateway: Gateway, bob_key: str) -> None:
    assert chat(gateway, bob_key).status_code == 200
    prefix = bob_key.split("-")[2]
    expired = make_key(gateway, "--user", "bob", "--name", "old", "--expires", "1m")
    with sqlite3.connect(gateway.home / "enclave.db") as db:
        db.execute(
            "UPDATE api_keys SET expires_at = '2001-01-01 00:00:00.000000' WHERE prefix = ?",
            (expired.split("-")[2],),
        )
    revoked = make_key(gateway, "--user", "bob", "--name", "gone")
    assert cli(gateway, "keys", "revoke", revoked.split("-")[2]).returncode == 0
    wrong_secret = bob_key[:-4] + "AAAA"
    unknown_prefix = bob_key.replace(prefix, "zzzzzzzz")
    time.sleep(2.5)  # past the gateway's 2 s key cache, as another replica would be
    answers = [
        error_of(chat(gateway, key), 401)
        for key in (wrong_secret, unknown_prefix, "sk-enc-nonsense", "not-a-key", expired, revoked)
    ]
    assert all(answer == answers[0] for answer in answers), answers  # nothing tells them apart
    assert chat(gateway, bob_key).status_code == 200


def test_a_key_outside_its_models_is_403_and_sees_only_its_models(
    gateway: Gateway, bob_key: str
) -> None:
    error = error_of(chat(gateway, bob_key, model="other-model"), 403)
    assert error["type"] == "permission_error"
    assert "other-model" in error["message"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=bob_key, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["fake-model"]


def from_proxy(gateway: Gateway, key: str, forwarded: str | None) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=PROXY)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        return client.post(gateway.v1 + "/chat/completions", json=body,
                           headers={**auth(key), **headers})  # fmt: skip


def test_addresses_outside_the_allowlist_are_403(gateway: Gateway, bob_key: str) -> None:
    assert from_proxy(gateway, bob_key, "10.1.2.3").status_code == 200  # via the proxy
    error = error_of(from_proxy(gateway, bob_key, "192.168.7.7"), 403)
    assert "192.168.7.7" in error["message"]
    # the proxy's own address is not on the list
    assert from_proxy(gateway, bob_key, None).status_code == 403
    # from an untrusted peer, a forged X-Forwarded-For is not believed
    spoofed = chat(gateway, bob_key, extra={"X-Forwarded-For": "192.168.7.7"})
    assert spoofed.status_code == 200


def test_a_key_with_its_own_allowlist(gateway: Gateway) -> None:
    key = make_key(gateway, "--user", "bob", "--name", "office", "--allow", "10.0.0.0/8")
    assert "127.0.0.1" in error_of(chat(gateway, key), 403)["message"]
    assert from_proxy(gateway, key, "10.9.9.9").status_code == 200


def test_limits_answer_429_with_retry_after_and_ratelimit_headers(gateway: Gateway) -> None:
    key = make_key(gateway, "--user", "bob", "--name", "limited", "--rpm", "2")
    first = chat(gateway, key)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(gateway, key).status_code == 200
    refused = chat(gateway, key)
    error = error_of(refused, 429)
    assert "2 requests per minute" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )


# --- sessions and the admin API --------------------------------------------------------


def login(gateway: Gateway, user: str, password: str) -> httpx.Response:
    body = {"username": user, "password": password}
    return httpx.post(gateway.url + "/api/auth/login", json=body, trust_env=False, timeout=10)


def test_admin_api_with_a_web_session(gateway: Gateway) -> None:
    tokens = login(gateway, "alice", ADMIN_PASSWORD).json()
    admin = auth(tokens["access_token"])
    made = httpx.post(gateway.url + "/api/admin/keys", headers=admin, trust_env=False,
                      json={"user": "bob", "name": "from-console", "rpm": 100})  # fmt: skip
    assert made.status_code == 201, made.text
    secret, prefix = made.json()["key"], made.json()["prefix"]
    assert chat(gateway, secret).status_code == 200
    listed = httpx.get(gateway.url + "/api/admin/keys?user=bob", headers=admin, trust_env=False)
    assert prefix in {k["prefix"] for k in listed.json()["data"]}
    assert all("key" not in k and "secret_hash" not in k for k in listed.json()["data"])
    rotated = httpx.post(f"{gateway.url}/api/admin/keys/{prefix}/rotate", headers=admin,
                         trust_env=False).json()  # fmt: skip
    assert chat(gateway, rotated["key"]).status_code == 200
    assert chat(gateway, secret).status_code == 401  # revoked on this gateway at once
    bob = auth(login(gateway, "bob", BOB_PASSWORD).json()["access_token"])
    assert error_of(httpx.get(gateway.url + "/api/admin/users", headers=bob, trust_env=False),
                    403)["type"] == "permission_error"  # fmt: skip
    fresh = httpx.post(gateway.url + "/api/auth/refresh", trust_env=False,
                       json={"refresh_token": tokens["refresh_token"]})  # fmt: skip
    assert httpx.get(gateway.url + "/api/admin/users", headers=auth(fresh.json()["access_token"]),
                     trust_env=False).status_code == 200  # fmt: skip
    # a refresh token is not an access token
    assert chat(gateway, tokens["refresh_token"]).status_code == 401


def test_an_admin_body_over_its_limit_is_a_413_naming_that_limit(gateway: Gateway) -> None:
    """The admin API reads at most 64 KiB; the refusal says so, not a setting that does
    not bound it."""
    admin = auth(login(gateway, "alice", ADMIN_PASSWORD).json()["access_token"])
    body = {"user": "bob", "name": "x" * (65 * 1024)}
    refused = httpx.post(gateway.url + "/api/admin/keys", headers=admin, json=body,
                         trust_env=False)  # fmt: skip
    message = error_of(refused, 413)["message"]
    assert message == "request body is larger than 64 KiB (the admin API's fixed limit)"


def test_admin_paths_no_route_has_are_403_for_non_administrators(
    gateway: Gateway, bob_key: str
) -> None:
    admin = auth(login(gateway, "alice", ADMIN_PASSWORD).json()["access_token"])
    for path in ("/api/admin/nothing", "/api/admin/users/bob/nothing"):
        refused = httpx.delete(gateway.url + path, headers=auth(bob_key), trust_env=False)
        assert error_of(refused, 403)["message"] == "this route is for administrators"
        assert httpx.delete(gateway.url + path, headers=admin, trust_env=False).status_code == 404
    wrong_method = httpx.get(gateway.url + "/api/admin/users/bob/disable", headers=admin,
                             trust_env=False)  # fmt: skip
    assert wrong_method.status_code == 405


def test_guessed_passwords_lock_the_login_and_are_audited(gateway: Gateway) -> None:
    added = cli(gateway, "users", "add", "carol", "--password-stdin", stdin="carols-password\n")
    assert added.returncode == 0
    for _ in range(3):
        assert (
            error_of(login(gateway, "carol", "guess-guess"), 401)["type"] == "authentication_error"
        )
    locked = login(gateway, "carol", "carols-password")  # right, but too late
    assert "too many failed logins" in error_of(locked, 429)["message"]
    assert int(locked.headers["retry-after"]) >= 1
    records = audit_records(gateway)
    failed = [
        r for r in records if r["action"] == "login.failed" and r["detail"]["name"] == "carol"
    ]
    assert len(failed) == 3


# --- the audit -------------------------------------------------------------------------


def test_each_call_is_recorded_before_its_response_ends(gateway: Gateway, bob_key: str) -> None:
    reply = chat(gateway, bob_key)
    request_id = reply.headers["x-request-id"]
    # a separate process reading the database right after the response: already there
    record = next(r for r in audit_records(gateway) if r["request_id"] == request_id)
    assert record["user"] == "bob"
    assert record["key_prefix"] == bob_key.split("-")[2]
    assert (record["model"], record["member"], record["status"]) == ("fake-model", "fake", 200)
    assert record["tokens_in"] > 0
    assert record["tokens_out"] > 0
    assert record["client_ip"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{64}", record["content"])  # audit.content: hash
    admin_actions = {r["action"] for r in audit_records(gateway) if r["kind"] == "admin"}
    assert {"users.add", "keys.create"} <= admin_actions
    verified = cli(gateway, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("ok:")


def copy_home(gateway: Gateway, target: Path) -> Path:
    shutil.copytree(gateway.home, target, ignore=shutil.ignore_patterns("logs"))
    return target


def verify_copy(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENCLAVE_HOME": str(home)}
    return subprocess.run([ENCLAVE, "audit", "verify"], text=True, capture_output=True,
                          env=env, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit SET status = status + 1 WHERE seq = {seq}",
        "UPDATE audit SET user = 'mallory' WHERE seq = {seq}",
        "DELETE FROM audit WHERE seq = {seq}",
        "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
    ],
)
def test_editing_or_deleting_an_audit_row_is_found_and_named(
    gateway: Gateway, bob_key: str, tmp_path: Path, tamper: str
) -> None:
    chat(gateway, bob_key)
    home = copy_home(gateway, tmp_path / "copy")
    with sqlite3.connect(home / "enclave.db") as db:
        seqs = [row[0] for row in db.execute("SELECT seq FROM audit ORDER BY seq")]
        target = seqs[len(seqs) // 2]
        db.execute(tamper.format(seq=target))
    broken = verify_copy(home)
    assert broken.returncode == 1
    named = target if "max(seq)" not in tamper else seqs[-1]
    assert f"record {named}" in broken.stdout + broken.stderr


def test_keys_and_passwords_never_reach_a_log(gateway: Gateway, bob_key: str) -> None:
    chat(gateway, bob_key)
    secrets_ = [bob_key, bob_key.split("-", 3)[3], ADMIN_PASSWORD, BOB_PASSWORD, "carols-password"]
    texts = [gateway.log(), export_text(gateway)]
    texts += [path.read_text(errors="replace") for path in (gateway.home / "logs").glob("*")]
    for text in texts:
        for secret in secrets_:
            assert secret not in text


def export_text(gateway: Gateway) -> str:
    return cli(gateway, "audit", "export", "--format", "csv").stdout


# --- exposure and TLS ------------------------------------------------------------------


def test_without_authentication_the_admin_api_is_closed(tmp_path: Path) -> None:
    config = {"engine": {"enabled": False, "embeddings": False, "ocr": False}}
    with run_gateway(tmp_path, config, health="/v1/models") as gw:  # loopback: no keys...
        assert httpx.get(gw.v1 + "/models", trust_env=False).status_code == 200
        body = {"name": "eve", "role": "admin", "password": "eve-wants-in"}
        refused = httpx.post(gw.url + "/api/admin/users", json=body, trust_env=False)
        assert "needs authentication" in error_of(refused, 403)["message"]  # ...but no admin
        assert "eve" not in cli(gw, "users", "list").stdout


def test_a_public_bind_without_auth_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("auth: {mode: 'off'}\nengine: {enabled: false}\n")
    env = {**os.environ, "ENCLAVE_HOME": str(tmp_path)}
    serve = [ENCLAVE, "--config", str(config), "serve", "--host", "0.0.0.0"]
    refused = subprocess.run(
        [*serve, "--port", str(free_port())],
        text=True, capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "refusing to serve 0.0.0.0 without authentication" in refused.stderr
    assert "Traceback" not in refused.stderr
    port = free_port()
    cmd = [ENCLAVE, "--config", str(config), "serve", "--host", "0.0.0.0", "--port", str(port),
           "--insecure"]  # fmt: skip
    with run_process(cmd, env, f"http://127.0.0.1:{port}/health", 60):
        pass  # it started


def test_tls(tmp_path: Path, fake: FakeUpstream) -> None:
    config = {"engine": {"enabled": False, "embeddings": False, "ocr": False}}
    with (
        run_tls_gateway(tmp_path / "home", config) as (url, _cert),
        pytest.raises(httpx.HTTPError),  # plain HTTP: no
    ):
        httpx.get(url.replace("https://", "http://") + "/health", trust_env=False, timeout=5)


def test_last_used_time_and_image_hashes(gateway: Gateway, fake: FakeUpstream) -> None:
    key = make_key(gateway, "--user", "bob", "--name", "camera")
    png = base64.b64decode(TINY_PNG)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + TINY_PNG}},
    ]}]}  # fmt: skip
    reply = httpx.post(gateway.v1 + "/chat/completions", json=body, headers=auth(key),
                       trust_env=False, timeout=10)  # fmt: skip
    assert reply.status_code == 200, reply.text
    record = next(
        r for r in audit_records(gateway) if r["request_id"] == reply.headers["x-request-id"]
    )
    assert record["images"] == [hashlib.sha256(png).hexdigest()]
    deadline = time.monotonic() + 15  # last-used times are written every 5 s
    while True:
        listed = json.loads(cli(gateway, "keys", "list", "--user", "bob", "--json").stdout)
        if next(k for k in listed if k["name"] == "camera")["last_used_at"]:
            break
        assert time.monotonic() < deadline, "last_used_at never set"
        time.sleep(0.5)


def test_a_config_reload_is_audited(gateway: Gateway) -> None:
    gateway.running.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any(r["action"] == "config.reload.applied" for r in audit_records(gateway)):
        assert time.monotonic() < deadline, "the reload was not audited"
        time.sleep(0.2)


def test_on_postgresql_with_redis_limits(tmp_path: Path, fake: FakeUpstream) -> None:
    from tests.fakes.postgres import available, shared_server
    from tests.fakes.redis import redis_server_path, run_redis

    if not available() or redis_server_path() is None:
        pytest.skip("needs the bundled PostgreSQL and redis-server (./task installs both)")
    server = shared_server()
    database = server.create_database()
    with run_redis() as redis:
        config = {**settings(fake), "database_url": database}
        config["auth"] = {**config["auth"], "rate_limits": "redis", "redis_url": redis.url}
        with run_gateway(tmp_path, config) as gw:
            added = cli(gw, "users", "add", "dora", "--password-stdin", stdin="doras-password\n")
            assert added.returncode == 0, added.stderr
            key = make_key(gw, "--user", "dora", "--name", "pg", "--rpm", "2")
            assert [chat(gw, key).status_code for _ in range(3)] == [200, 200, 429]
            verified = cli(gw, "audit", "verify")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert not (tmp_path / "enclave.db").exists()  # everything went to PostgreSQL
