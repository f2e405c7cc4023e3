"""The admin console's API on a real ``enclave serve`` (authentication on, SQLite, two
fake upstreams, one of which hangs when told to): dashboard stats from the audit log,
upstreams read from the router's memory while an upstream hangs, the audit log's pages,
records, verify and export, the masked configuration, and changing a key. A user who is
not an administrator gets 403 on every one of these routes."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

ADMIN, ADMIN_PASSWORD = "root", "root-password-for-the-console"
USER, USER_PASSWORD = "bob", "bob-password-for-the-console"
UPSTREAM_SECRET = "upstream-secret-4c1d"
EMBEDDER_SECRET = "embedder-secret-9f2e"
NEW_ROUTES = [
    ("GET", "/api/admin/stats"),
    ("GET", "/api/admin/upstreams"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/audit/1"),
    ("POST", "/api/admin/audit/verify"),
    ("GET", "/api/admin/audit/export"),
    ("GET", "/api/admin/config"),
    ("PATCH", "/api/admin/keys/sk-nothing"),
]


@pytest.fixture(scope="module")
def stuck() -> Iterator[FakeUpstream]:
    """A second upstream, told to hang by the test that needs it."""
    with run_fake_upstream(models=["stuck-model"], name="stuck") as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    fake: FakeUpstream, stuck: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "auth": {"mode": "on"},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "knowledge": {"embedder_api_key": EMBEDDER_SECRET},
        "router": {"health_timeout_s": 1},
        "upstreams": [
            {"name": "fake", "base_url": fake.base_url, "models": ["fake-model"],
             "api_key": UPSTREAM_SECRET},
            {"name": "stuck", "base_url": stuck.base_url, "models": ["stuck-model"]},
        ],
    }  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("console-admin"), config) as gw:
        add_user(gw, ADMIN, "admin", ADMIN_PASSWORD)
        add_user(gw, USER, "user", USER_PASSWORD)
        yield gw


def login(gateway: Gateway, name: str, password: str) -> dict[str, str]:
    reply = httpx.post(gateway.url + "/api/auth/login", trust_env=False,
                       json={"username": name, "password": password})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return {"Authorization": "Bearer " + reply.json()["access_token"]}


def client(gateway: Gateway, name: str, password: str) -> httpx.Client:
    headers = login(gateway, name, password)
    return httpx.Client(base_url=gateway.url, headers=headers, trust_env=False, timeout=30)


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> Iterator[httpx.Client]:
    with client(gateway, ADMIN, ADMIN_PASSWORD) as made:
        yield made


@pytest.fixture(scope="module")
def user(gateway: Gateway) -> Iterator[httpx.Client]:
    with client(gateway, USER, USER_PASSWORD) as made:
        yield made


def chat(client: httpx.Client, model: str = "fake-model", *, stream: bool) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return client.post("/v1/chat/completions", json=body)


def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Call ``check`` until it returns something true; that is returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_user_who_is_not_an_administrator_gets_403_everywhere(
    gateway: Gateway, user: httpx.Client
) -> None:
    for method, path in NEW_ROUTES:
        body: dict[str, Any] | None = {} if method in ("POST", "PATCH") else None
        reply = user.request(method, path, json=body)
        assert reply.status_code == 403, (method, path, reply.text)
        assert reply.json()["error"]["message"] == "this route is for administrators"
        anonymous = httpx.request(method, gateway.url + path, json=body, trust_env=False)
        assert anonymous.status_code == 401, (method, path)


def test_stats_count_calls_errors_tokens_and_time_to_first_token(
    admin: httpx.Client, user: httpx.Client
) -> None:
    for stream in (True, True, False):
        assert chat(user, stream=stream).status_code == 200
    assert chat(user, "no-such-model", stream=False).status_code == 404
    reply = admin.get("/api/admin/stats", params={"window": "1h", "bucket": "5m", "by": "user"})
    assert reply.status_code == 200, reply.text
    stats = reply.json()
    assert (stats["window_s"], stats["bucket_s"], stats["by"]) == (3600, 300, "user")
    assert len(stats["series"]) in (12, 13)
    assert not stats["truncated"]
    bob = next(g for g in stats["groups"] if g["name"] == USER)
    assert bob["requests"] >= 4
    assert bob["errors"] >= 1
    assert bob["errors_5xx"] == 0
    assert bob["tokens_out"] > 0
    assert bob["p50_ms"] is not None
    assert bob["ttft_p50_ms"] is not None  # streamed calls keep ttft_ms in their record
    assert sum(point["requests"] for point in stats["series"]) == stats["totals"]["requests"]
    too_many = admin.get("/api/admin/stats", params={"window": "30d", "bucket": "1m"})
    assert too_many.status_code == 400
    assert "audit.stats_max_buckets" in too_many.json()["error"]["message"]


def test_the_audit_log_pages_filters_and_opens_records(
    gateway: Gateway, admin: httpx.Client, user: httpx.Client
) -> None:
    request_id = chat(user, stream=True).headers["x-request-id"]
    found = admin.get("/api/admin/audit", params={"q": request_id}).json()["data"]
    assert len(found) == 1
    summary = found[0]
    assert (summary["user"], summary["kind"], summary["status"]) == (USER, "api", 200)
    assert "detail" not in summary
    whole = admin.get(f"/api/admin/audit/{summary['seq']}").json()
    assert whole["detail"]["ttft_ms"] >= 0
    assert len(whole["hash"]) == 64
    assert len(whole["prev_hash"]) == 64
    assert admin.get("/api/admin/audit/999999999").status_code == 404
    # keyset pages, newest first
    first = admin.get("/api/admin/audit", params={"limit": 2, "user": USER}).json()
    older = {"limit": 2, "user": USER, "before": first["next_before"]}
    second = admin.get("/api/admin/audit", params=older).json()
    seqs = [r["seq"] for r in first["data"] + second["data"]]
    assert seqs == sorted(seqs, reverse=True)
    assert len(set(seqs)) == 4
    assert admin.get("/api/admin/audit", params={"limit": 201}).status_code == 400
    assert admin.get("/api/admin/audit", params={"status": "9xx"}).status_code == 400
    errors = admin.get("/api/admin/audit", params={"status": "error", "kind": "api"}).json()
    assert all(r["status"] >= 400 for r in errors["data"])
    # the chain, ttft_ms in detail included, still verifies from the command line
    done = cli(gateway, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


def test_verify_runs_and_is_recorded(admin: httpx.Client) -> None:
    reply = admin.post("/api/admin/audit/verify", json={})
    assert reply.status_code == 200, reply.text
    verdict = reply.json()
    assert verdict["ok"] is True
    assert verdict["checked"] > 0
    assert verdict["first_bad_seq"] is None
    assert verdict["witness"].startswith("witness:")
    assert "agree with the chain" in verdict["witness"]
    alone = admin.post("/api/admin/audit/verify", json={"witness": False}).json()
    assert alone["ok"]
    assert "not checked" in alone["witness"]
    recorded = admin.get("/api/admin/audit", params={"action": "audit.verify"}).json()["data"]
    assert len(recorded) >= 2
    assert recorded[0]["kind"] == "admin"
    assert recorded[0]["user"] == ADMIN


def test_export_streams_a_download_and_is_recorded(admin: httpx.Client, user: httpx.Client) -> None:
    chat(user, stream=False)
    with admin.stream("GET", "/api/admin/audit/export",
                      params={"format": "jsonl", "user": USER}) as reply:  # fmt: skip
        assert reply.status_code == 200
        assert reply.headers["content-disposition"].startswith("attachment; filename=")
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert lines
    assert all(row["user"] == USER for row in lines)
    assert [row["seq"] for row in lines] == sorted(row["seq"] for row in lines)
    as_csv = admin.get("/api/admin/audit/export", params={"format": "csv", "kind": "admin"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows
    assert {row["kind"] for row in rows} == {"admin"}
    assert admin.get("/api/admin/audit/export", params={"format": "xml"}).status_code == 400
    recorded = admin.get("/api/admin/audit", params={"action": "audit.export"}).json()["data"]
    assert len(recorded) >= 2
    detail = admin.get(f"/api/admin/audit/{recorded[-1]['seq']}").json()["detail"]
    assert detail == {"format": "jsonl", "user": USER}


def test_the_config_shows_every_setting_and_no_secret(
    gateway: Gateway, admin: httpx.Client
) -> None:
    reply = admin.get("/api/admin/config")
    assert reply.status_code == 200
    config = reply.json()
    assert config["path"] == str(gateway.home / "enclave.yaml")
    assert UPSTREAM_SECRET not in reply.text
    assert EMBEDDER_SECRET not in reply.text
    settings = config["settings"]
    assert settings["upstreams"][0]["api_key"] == "***"
    assert settings["knowledge"]["embedder_api_key"] == "***"
    assert settings["auth"]["mode"] == "on"


def test_upstreams_answer_at_once_while_an_upstream_hangs(
    admin: httpx.Client, user: httpx.Client, stuck: FakeUpstream
) -> None:
    stuck.configure(hang=True)
    hung: list[httpx.Response] = []
    call = threading.Thread(target=lambda: hung.append(chat(user, "stuck-model", stream=True)))
    try:
        call.start()
        stuck.wait_stats(lambda s: s["in_flight"] == 1, timeout=20)

        def pool() -> dict[str, Any] | None:
            reply = admin.get("/api/admin/upstreams", timeout=5)
            assert reply.status_code == 200
            pools = {p["name"]: p for p in reply.json()["pools"]}
            found: dict[str, Any] = pools["stuck-model"]
            return found if found["in_flight"] == 1 else None

        seen = until(pool, "the hung call in flight on its pool")
        member = seen["members"][0]
        assert (member["name"], member["in_flight"], member["restarts"]) == ("stuck", 1, None)
        assert member["breaker"] == "closed"
        assert seen["queued"] == 0
        # the health checks hang too: the answer still comes at once, and shows them fail
        stuck.configure(hang_health=True)

        def unhealthy() -> bool:
            reply = admin.get("/api/admin/upstreams", timeout=5).json()
            pools = {p["name"]: p for p in reply["pools"]}
            return pools["stuck-model"]["members"][0]["healthy"] is False

        until(unhealthy, "the hanging member marked unhealthy by its health check")
    finally:
        stuck.restore()
        call.join(timeout=60)
    assert hung
    assert hung[0].status_code == 200
    body = admin.get("/api/admin/upstreams").json()
    fake_member = next(p for p in body["pools"] if p["name"] == "fake-model")["members"][0]
    assert fake_member["url"].startswith("http://127.0.0.1:")
    assert body["engine"] is None


def test_a_key_changed_by_patch_applies_at_its_next_call(
    gateway: Gateway, admin: httpx.Client
) -> None:
    made = admin.post("/api/admin/keys", json={"user": USER, "name": "console"})
    assert made.status_code == 201, made.text
    secret, prefix = made.json()["key"], made.json()["prefix"]
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}) as key:  # fmt: skip
        assert chat(key, stream=False).status_code == 200
        change = {"name": "renamed", "models": ["stuck-*"], "rpm": 100}
        changed = admin.patch(f"/api/admin/keys/{prefix}", json=change)
        assert changed.status_code == 200, changed.text
        assert changed.json()["name"] == "renamed"
        assert changed.json()["rpm"] == 100
        assert chat(key, stream=False).status_code == 403  # fake-model is out of scope now
        restored = admin.patch(f"/api/admin/keys/{prefix}", json={"models": [], "rpm": 0})
        assert restored.json()["models"] == []
        assert restored.json()["rpm"] is None
        assert chat(key, stream=False).status_code == 200
    bad = admin.patch(f"/api/admin/keys/{prefix}", json={"allow": ["not-a-cidr"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "allow"
    assert admin.patch("/api/admin/keys/sk-nothing", json={"rpm": 1}).status_code == 404
    recorded = admin.get("/api/admin/audit", params={"action": "keys.set"}).json()["data"]
    assert len(recorded) == 2
    detail = admin.get(f"/api/admin/audit/{recorded[-1]['seq']}").json()["detail"]
    assert detail["models"] == ["stuck-*"]
    assert detail["name"] == "renamed"
