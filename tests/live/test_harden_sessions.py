"""Sessions and accounts as an attacker meets them (issue 13, section 4): a real `enclave
serve` with authentication on, users made and changed with the real CLI and admin API,
web sessions driven over HTTP. Each test reproduces one way a session outlived what
should have ended it, or a login told an attacker something."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, audit_records, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model", "other-model"])

ADMIN_PASSWORD = "correct horse battery staple"
PASSWORD = "a-users-long-password"
ATTEMPTS = 2  # auth.login_attempts


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "auth": {
            "mode": "on",
            "allow": ["127.0.0.1/32"],
            "login_attempts": ATTEMPTS,
            "lockout_s": 120,
        },
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {"name": "fake", "base_url": fake.base_url, "models": ["fake-model", "other-model"]}
        ],
    }
    with run_gateway(tmp_path_factory.mktemp("sessions"), config) as gw:
        add_user(gw, "root", "admin", ADMIN_PASSWORD)
        yield gw


def post(gateway: Gateway, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(gateway.url + path, json=body, headers=headers, trust_env=False, timeout=30)


def login(gateway: Gateway, name: str, password: str = PASSWORD) -> httpx.Response:
    return post(gateway, "/api/auth/login", {"username": name, "password": password})


def session(gateway: Gateway, name: str, password: str = PASSWORD) -> dict[str, str]:
    reply = login(gateway, name, password)
    assert reply.status_code == 200, reply.text
    tokens: dict[str, str] = reply.json()
    return tokens


def refresh(gateway: Gateway, token: str) -> httpx.Response:
    return post(gateway, "/api/auth/refresh", {"refresh_token": token})


def me(gateway: Gateway, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(gateway.url + "/api/auth/me", headers=headers, trust_env=False).status_code


def chat(gateway: Gateway, token: str, model: str = "fake-model") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return post(gateway, "/v1/chat/completions", body, token)


def user(gateway: Gateway, name: str, *options: str) -> None:
    added = cli(gateway, "users", "add", name, "--password-stdin", *options,
                stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr


def admin_token(gateway: Gateway) -> str:
    return session(gateway, "root", ADMIN_PASSWORD)["access_token"]


def assert_ended(gateway: Gateway, tokens: dict[str, str]) -> None:
    assert me(gateway, tokens["access_token"]) == 401
    assert refresh(gateway, tokens["refresh_token"]).status_code == 401


# --- logout and refresh ----------------------------------------------------------------


def test_logout_ends_the_access_and_the_refresh_token(gateway: Gateway) -> None:
    user(gateway, "lou")
    tokens = session(gateway, "lou")
    other = session(gateway, "lou")  # another login of the same user: not affected
    assert me(gateway, tokens["access_token"]) == 200
    done = post(gateway, "/api/auth/logout", token=tokens["access_token"])
    assert done.status_code == 200, done.text
    assert_ended(gateway, tokens)
    assert me(gateway, other["access_token"]) == 200
    assert any(r["action"] == "logout" and r["user"] == "lou" for r in audit_records(gateway))


def test_a_refresh_token_works_once_and_its_reuse_revokes_the_whole_family(
    gateway: Gateway,
) -> None:
    user(gateway, "rita")
    first = session(gateway, "rita")
    second = refresh(gateway, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    third = refresh(gateway, rotated["refresh_token"])  # rotation goes on
    assert third.status_code == 200, third.text
    newest = third.json()
    assert me(gateway, newest["access_token"]) == 200  # cached by the gateway now
    # A stolen copy of the first refresh token, replayed: refused, and everything
    # descended from that login, the newest pair included, stops working.
    replay = refresh(gateway, first["refresh_token"])
    assert replay.status_code == 401
    assert_ended(gateway, newest)
    assert me(gateway, rotated["access_token"]) == 401
    reuse = [r for r in audit_records(gateway) if r["action"] == "session.reuse"]
    assert [(r["user"], r["status"]) for r in reuse] == [("rita", 401)]


# --- revocation when the account changes -------------------------------------------------


def test_a_password_change_ends_the_users_sessions_but_keeps_their_keys(gateway: Gateway) -> None:
    user(gateway, "pat")
    tokens = session(gateway, "pat")
    made = cli(gateway, "keys", "create", "--user", "pat", "--name", "laptop")
    assert made.returncode == 0, made.stderr
    changed = cli(gateway, "users", "passwd", "pat", "--password-stdin",
                  stdin="another-long-password\n")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert_ended(gateway, tokens)
    assert chat(gateway, made.stdout.strip()).status_code == 200  # keys are kept
    assert me(gateway, session(gateway, "pat", "another-long-password")["access_token"]) == 200


def test_disabling_a_user_ends_their_sessions_for_good(gateway: Gateway) -> None:
    user(gateway, "dan")
    tokens = session(gateway, "dan")
    admin = admin_token(gateway)
    assert post(gateway, "/api/admin/users/dan/disable", token=admin).status_code == 200
    assert_ended(gateway, tokens)
    assert post(gateway, "/api/admin/users/dan/enable", token=admin).status_code == 200
    assert_ended(gateway, tokens)  # enabling again does not bring old sessions back
    assert me(gateway, session(gateway, "dan")["access_token"]) == 200


def test_a_role_change_ends_the_users_sessions(gateway: Gateway) -> None:
    user(gateway, "ray")
    tokens = session(gateway, "ray")
    changed = cli(gateway, "users", "set", "ray", "--role", "admin")
    assert changed.returncode == 0, changed.stderr
    assert_ended(gateway, tokens)
    fresh = session(gateway, "ray")["access_token"]
    listed = httpx.get(gateway.url + "/api/admin/users", trust_env=False,
                       headers={"Authorization": f"Bearer {fresh}"})  # fmt: skip
    assert listed.status_code == 200
    demoted = httpx.patch(gateway.url + "/api/admin/users/ray", json={"role": "user"},
                          headers={"Authorization": f"Bearer {admin_token(gateway)}"},
                          trust_env=False)  # fmt: skip
    assert demoted.status_code == 200, demoted.text
    assert me(gateway, fresh) == 401


# --- user policies ----------------------------------------------------------------------


def test_a_web_session_obeys_its_users_models_and_rate(gateway: Gateway) -> None:
    user(gateway, "uma", "--models", "fake-*", "--rpm", "4")
    token = session(gateway, "uma")["access_token"]
    refused = chat(gateway, token, "other-model")
    assert refused.status_code in (403, 404), refused.text
    models = httpx.get(gateway.v1 + "/models", headers={"Authorization": f"Bearer {token}"},
                       trust_env=False).json()  # fmt: skip
    assert [m["id"] for m in models["data"]] == ["fake-model"]
    # Every /v1 call counts, the two above too.
    assert chat(gateway, token).status_code == 200
    assert chat(gateway, token).status_code == 200
    limited = chat(gateway, token)
    assert limited.status_code == 429, limited.text
    assert "4 requests per minute" in limited.json()["error"]["message"]


def test_a_key_is_bounded_by_its_own_and_its_users_policy(gateway: Gateway) -> None:
    admin = admin_token(gateway)
    made = post(gateway, "/api/admin/users", token=admin, body={
        "name": "kim", "password": PASSWORD, "models": ["fake-model"], "rpm": 2})  # fmt: skip
    assert made.status_code == 201, made.text
    assert (made.json()["models"], made.json()["rpm"]) == (["fake-model"], 2)
    created = cli(gateway, "keys", "create", "--user", "kim", "--name", "wide", "--rpm", "100")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert chat(gateway, key, "other-model").status_code in (403, 404)  # the user's models
    assert chat(gateway, key).status_code == 200
    assert chat(gateway, key).status_code == 429  # the user's rpm (the 403 counted too)
    # Lifting the user's policy lifts it for the key too (at once on this gateway).
    lifted = httpx.patch(gateway.url + "/api/admin/users/kim", json={"models": [], "rpm": 0},
                         headers={"Authorization": f"Bearer {admin}"}, trust_env=False)  # fmt: skip
    assert lifted.status_code == 200, lifted.text
    assert chat(gateway, key, "other-model").status_code == 200


# --- failed logins ----------------------------------------------------------------------


def test_a_failed_login_is_audited_with_the_name_tried_and_the_address(gateway: Gateway) -> None:
    assert login(gateway, "mallory-was-here", "not-the-password").status_code == 401
    failed = [
        r for r in audit_records(gateway)
        if r["action"] == "login.failed" and r["detail"].get("name") == "mallory-was-here"
    ]  # fmt: skip
    assert [(r["user"], r["client_ip"]) for r in failed] == [("mallory-was-here", "127.0.0.1")]


def shape(reply: httpx.Response) -> tuple[int, str, str | None]:
    """What an answer tells: status, body (numbers masked) and whether Retry-After is set."""
    body = re.sub(r"\d+", "N", reply.text)
    return reply.status_code, body, reply.headers.get("retry-after") and "set"


def lock(gateway: Gateway, name: str) -> list[httpx.Response]:
    """Wrong passwords for ``name`` until its logins are locked; every answer."""
    replies: list[httpx.Response] = []
    for _ in range(ATTEMPTS + 1):
        replies.append(login(gateway, name, "a-wrong-password"))
        if replies[-1].status_code == 429:
            return replies
    raise AssertionError(f"{name} was never locked: {[r.status_code for r in replies]}")


def test_unknown_names_and_wrong_passwords_answer_alike_locked_or_not(gateway: Gateway) -> None:
    user(gateway, "vera")
    real, ghost = lock(gateway, "vera"), lock(gateway, "nobody-by-that-name")
    assert [shape(r) for r in real[:ATTEMPTS]] == [shape(r) for r in ghost[:ATTEMPTS]]
    assert {r.status_code for r in real[:ATTEMPTS]} == {401}
    assert shape(real[-1]) == shape(ghost[-1])
    assert shape(login(gateway, "vera", PASSWORD)) == shape(
        login(gateway, "nobody-by-that-name", PASSWORD)
    )  # locked: the right password changes nothing
