"""What the web console's chat page asks of the gateway (issue 14), against a real
``enclave serve`` (authentication on, SQLite) in front of the fake upstream:

- the refresh token in an HttpOnly cookie, set, read and cleared only with the
  ``X-Enclave-CSRF: 1`` header; reuse of a spent cookie still revokes the session; the
  cookie alone does nothing, and no API route takes a cookie for authentication;
- conversations of plain models (``X-Enclave-Conversation``), streamed or not, each answer
  with its meta; a cut stream keeps what arrived, marked;
- the listing (keyset pages, title search), rename and truncation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model", "other-model"], tokens=5)

CSRF = {"X-Enclave-CSRF": "1"}
PASSWORD = "a-users-long-password"
REFRESH_TTL = 3600


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "auth": {"mode": "on", "refresh_ttl_s": REFRESH_TTL, "trusted_proxies": ["127.0.0.1/32"]},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {"name": "fake", "base_url": fake.base_url, "models": ["fake-model", "other-model"]}
        ],
        "assistants": [{"name": "helper", "model": "fake-model", "memory": "off"}],
    }
    with run_gateway(tmp_path_factory.mktemp("chatapi"), config) as gw:
        add_user(gw, "root", "admin", PASSWORD)
        for name in ("alice", "bob", "carol"):
            add_user(gw, name, "user", PASSWORD)
        yield gw


def client(gateway: Gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, trust_env=False, timeout=60)


def login(gateway: Gateway, name: str) -> str:
    reply = httpx.post(gateway.url + "/api/auth/login", trust_env=False, timeout=30,
                       json={"username": name, "password": PASSWORD})  # fmt: skip
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_cookie(reply: httpx.Response) -> str:
    cookies = [v for k, v in reply.headers.multi_items() if k == "set-cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


# --- the refresh cookie ---------------------------------------------------------------------


def test_login_with_the_header_sets_the_httponly_cookie_instead_of_a_body_token(
    gateway: Gateway,
) -> None:
    with client(gateway) as http:
        body = {"username": "alice", "password": PASSWORD}
        plain = http.post("/api/auth/login", json=body)
        assert plain.status_code == 200, plain.text
        assert "set-cookie" not in plain.headers  # as before
        assert plain.json()["refresh_token"]
        console = http.post("/api/auth/login", json=body, headers=CSRF)
        assert console.status_code == 200, console.text
        assert console.json()["refresh_token"] is None
        assert console.json()["access_token"]
    cookie = set_cookie(console).lower()
    assert cookie.startswith("enclave_refresh=")
    for part in ("httponly", "samesite=strict", "path=/api/auth", f"max-age={REFRESH_TTL}"):
        assert part in cookie, cookie
    assert "secure" not in cookie  # plain http here


def test_the_cookie_is_secure_behind_a_trusted_https_proxy(gateway: Gateway) -> None:
    headers = CSRF | {"X-Forwarded-Proto": "https"}  # from 127.0.0.1, a trusted proxy here
    with client(gateway) as http:
        reply = http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD},
                          headers=headers)  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert "; secure" in set_cookie(reply).lower()


def test_refresh_takes_the_cookie_with_the_header_and_rotates_it(gateway: Gateway) -> None:
    with client(gateway) as http:
        http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD},
                  headers=CSRF).raise_for_status()  # fmt: skip
        first = http.cookies["enclave_refresh"]
        again = http.post("/api/auth/refresh", json={}, headers=CSRF)
        assert again.status_code == 200, again.text
        assert again.json()["refresh_token"] is None
        second = http.cookies["enclave_refresh"]
        assert second != first
        access = again.json()["access_token"]
        assert http.get("/api/auth/me", headers=bearer(access)).json()["user"] == "alice"
        empty = http.post("/api/auth/refresh", headers=CSRF)  # no body at all
        assert empty.status_code == 200, empty.text
        assert http.cookies["enclave_refresh"] not in (first, second)


def test_a_spent_cookie_presented_again_revokes_the_session(gateway: Gateway) -> None:
    with client(gateway) as http:
        http.post("/api/auth/login", json={"username": "bob", "password": PASSWORD},
                  headers=CSRF).raise_for_status()  # fmt: skip
        spent = http.cookies["enclave_refresh"]
        rotated = http.post("/api/auth/refresh", json={}, headers=CSRF)
        assert rotated.status_code == 200, rotated.text
        access = rotated.json()["access_token"]
        live = http.cookies["enclave_refresh"]
    with client(gateway) as thief:
        thief.cookies.set("enclave_refresh", spent, path="/api/auth")
        assert thief.post("/api/auth/refresh", json={}, headers=CSRF).status_code == 401
    with client(gateway) as http:  # the whole session is gone: access and rotated cookie
        assert http.get("/api/auth/me", headers=bearer(access)).status_code == 401
        http.cookies.set("enclave_refresh", live, path="/api/auth")
        assert http.post("/api/auth/refresh", json={}, headers=CSRF).status_code == 401


def test_the_cookie_without_the_header_does_nothing(gateway: Gateway) -> None:
    with client(gateway) as http:
        http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD},
                  headers=CSRF).raise_for_status()  # fmt: skip
        cookie = http.cookies["enclave_refresh"]
        bodies: tuple[dict[str, str] | None, ...] = ({}, None)
        for body in bodies:  # a cross-site form: the cookie goes, the header cannot
            forged = http.post("/api/auth/refresh", json=body)
            assert forged.status_code == 400, forged.text  # as before: no token given
            assert "set-cookie" not in forged.headers
        wrong = http.post("/api/auth/refresh", json={}, headers={"X-Enclave-CSRF": "yes"})
        assert wrong.status_code == 400
        assert http.cookies["enclave_refresh"] == cookie
        # still good: nothing above spent it
        assert http.post("/api/auth/refresh", json={}, headers=CSRF).status_code == 200


def test_no_cookie_with_the_header_is_a_401(gateway: Gateway) -> None:
    with client(gateway) as http:
        reply = http.post("/api/auth/refresh", json={}, headers=CSRF)
    assert reply.status_code == 401, reply.text
    assert "enclave_refresh" in reply.json()["error"]["message"]


def test_no_api_route_authenticates_by_cookie(gateway: Gateway) -> None:
    with client(gateway) as http:
        reply = http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD},
                          headers=CSRF)  # fmt: skip
        access = reply.json()["access_token"]
        refresh = http.cookies["enclave_refresh"]
    for name, value in (("enclave_refresh", refresh), ("enclave_refresh", access),
                        ("access_token", access), ("session", access)):  # fmt: skip
        with client(gateway) as http:
            http.cookies.set(name, value)
            for path in ("/api/auth/me", "/v1/models", "/api/conversations"):
                assert http.get(path, headers=CSRF).status_code == 401, (name, path)
            chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
            assert http.post("/v1/chat/completions", json=chat, headers=CSRF).status_code == 401


def test_logout_with_the_header_clears_the_cookie(gateway: Gateway) -> None:
    with client(gateway) as http:
        reply = http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD},
                          headers=CSRF)  # fmt: skip
        access = reply.json()["access_token"]
        cookie = http.cookies["enclave_refresh"]
        out = http.post("/api/auth/logout", headers=CSRF | bearer(access))
        assert out.status_code == 200, out.text
        cleared = set_cookie(out).lower()
        assert cleared.startswith("enclave_refresh="), cleared
        assert "max-age=0" in cleared, cleared
        assert "enclave_refresh" not in http.cookies
        http.cookies.set("enclave_refresh", cookie, path="/api/auth")
        assert http.post("/api/auth/refresh", json={}, headers=CSRF).status_code == 401


# --- conversations of plain models -------------------------------------------------------


def chat(
    gateway: Gateway, token: str, text: str, *, conversation: str | None = None,
    model: str = "fake-model", stream: bool = False, history: list[dict[str, Any]] | None = None,
) -> httpx.Response:  # fmt: skip
    headers = bearer(token)
    if conversation:
        headers["X-Enclave-Conversation"] = conversation
    body: dict[str, Any] = {
        "model": model, "stream": stream,
        "messages": [*(history or []), {"role": "user", "content": text}],
    }  # fmt: skip
    if stream:
        body["stream_options"] = {"include_usage": True}
    reply = httpx.post(gateway.v1 + "/chat/completions", json=body, headers=headers,
                       trust_env=False, timeout=60)  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply


def streamed_text(reply: httpx.Response) -> str:
    parts = []
    for line in reply.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def get(gateway: Gateway, token: str, path: str, status: int = 200) -> Any:
    reply = httpx.get(gateway.url + path, headers=bearer(token), trust_env=False, timeout=60)
    assert reply.status_code == status, reply.text
    return reply.json()


def test_a_streamed_plain_model_exchange_is_stored_with_its_meta(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    token = login(gateway, "carol")
    cid = uuid.uuid4().hex
    reply = chat(gateway, token, "What is Rust?", conversation=cid, stream=True)
    assert reply.headers["x-enclave-conversation"] == cid
    answer = streamed_text(reply)
    assert answer.startswith("echo: What is Rust?")
    history = [{"role": "user", "content": "What is Rust?"},
               {"role": "assistant", "content": answer}]  # fmt: skip
    again = chat(gateway, token, "And Go?", conversation=cid, model="other-model",
                 history=history)  # fmt: skip
    assert again.headers["x-enclave-conversation"] == cid
    second = again.json()["choices"][0]["message"]["content"]
    one = get(gateway, token, f"/api/conversations/{cid}")
    assert (one["kind"], one["model"], one["title"]) == ("model", "other-model", "What is Rust?")
    messages = one["data"]
    assert [(m["index"], m["role"], m["content"]) for m in messages] == [
        (0, "user", "What is Rust?"), (1, "assistant", answer),
        (2, "user", "And Go?"), (3, "assistant", second),
    ]  # fmt: skip
    assert messages[0]["meta"] is None
    assert messages[2]["meta"] is None
    first, last = messages[1]["meta"], messages[3]["meta"]
    assert (first["model"], last["model"]) == ("fake-model", "other-model")
    assert first["upstream"] == "fake"
    assert last["upstream"] == "fake"
    assert first["tokens_out"] == 5
    assert last["tokens_out"] == 5
    assert first["tokens_in"] > 0
    assert last["tokens_in"] > first["tokens_in"]
    assert 0 <= first["ttft_ms"] <= first["latency_ms"]
    assert "incomplete" not in first


def test_without_the_header_nothing_is_stored(gateway: Gateway) -> None:
    token = login(gateway, "carol")
    before = get(gateway, token, "/api/conversations?limit=500")["data"]
    for stream in (False, True):
        reply = chat(gateway, token, "nothing kept", stream=stream)
        assert "x-enclave-conversation" not in reply.headers
    assert get(gateway, token, "/api/conversations?limit=500")["data"] == before


def test_an_assistant_answer_keeps_its_meta_too(gateway: Gateway) -> None:
    token = login(gateway, "carol")
    cid = uuid.uuid4().hex
    chat(gateway, token, "Hello helper", conversation=cid, model="assistant/helper", stream=True)
    one = get(gateway, token, f"/api/conversations/{cid}")
    assert (one["kind"], one["model"]) == ("assistant", "assistant/helper")
    meta = one["data"][1]["meta"]
    assert meta["model"] == "assistant/helper"
    assert meta["upstream"] == "fake"
    assert meta["tokens_out"] == 5


def wait_messages(gateway: Gateway, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    """The conversation's messages once ``count`` are stored (bounded wait)."""
    import time

    until = time.monotonic() + 30
    while True:
        reply = httpx.get(gateway.url + f"/api/conversations/{cid}", headers=bearer(token),
                          trust_env=False, timeout=30)  # fmt: skip
        if reply.status_code == 200 and len(reply.json()["data"]) >= count:
            data: list[dict[str, Any]] = reply.json()["data"]
            return data
        assert time.monotonic() < until, reply.text
        time.sleep(0.05)


def test_a_stream_the_client_stops_keeps_what_arrived_marked(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    token = login(gateway, "carol")
    cid = uuid.uuid4().hex
    fake.configure(stall_after=2)
    try:
        body = {"model": "fake-model", "stream": True,
                "messages": [{"role": "user", "content": "long story"}]}  # fmt: skip
        headers = bearer(token) | {"X-Enclave-Conversation": cid}
        with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, headers=headers,
                          trust_env=False, timeout=60) as reply:  # fmt: skip
            seen = ""
            for line in reply.iter_lines():
                if line.startswith("data: {"):
                    seen += "".join((c.get("delta") or {}).get("content") or ""
                                    for c in json.loads(line[6:])["choices"])  # fmt: skip
                if len(seen.split()) >= 2:
                    break  # the user presses stop
    finally:
        fake.configure(stall_after=None)
    messages = wait_messages(gateway, token, cid, 2)
    assert messages[0]["content"] == "long story"
    assert messages[1]["content"] == seen
    assert messages[1]["meta"]["incomplete"] == "client_disconnected"


def test_a_stream_the_upstream_breaks_keeps_what_arrived_marked(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    token = login(gateway, "carol")
    cid = uuid.uuid4().hex
    fake.configure(error_after=2)
    try:
        reply = chat(gateway, token, "broken story", conversation=cid, stream=True)
    finally:
        fake.configure(error_after=None)
    assert '"error"' in reply.text
    messages = wait_messages(gateway, token, cid, 2)
    assert messages[1]["content"] == streamed_text(reply)
    assert messages[1]["meta"]["incomplete"] == "upstream_error"


# --- listing, rename, truncate ----------------------------------------------------------


def test_the_listing_pages_by_cursor_and_searches_titles(gateway: Gateway) -> None:
    token = login(gateway, "bob")
    titles = [f"Topic {i} {'Kubernetes' if i % 3 == 0 else 'cooking'}" for i in range(7)]
    ids = []
    for title in titles:
        ids.append(uuid.uuid4().hex)
        chat(gateway, token, title, conversation=ids[-1])
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = get(gateway, token, f"/api/conversations?limit=3&cursor={cursor}")
        pages += 1
        seen += [c["id"] for c in page["data"]]
        assert all(c["kind"] == "model" and c["model"] == "fake-model" for c in page["data"])
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    assert pages == 3
    found = get(gateway, token, "/api/conversations?q=kubernetes")["data"]
    assert [c["title"] for c in found] == [titles[6], titles[3], titles[0]]
    assert get(gateway, token, "/api/conversations?q=100%25")["data"] == []  # % is literal
    error = get(gateway, token, "/api/conversations?cursor=bm9wZQ", status=400)["error"]
    assert error["param"] == "cursor"
    # alice sees none of bob's; an administrator sees them with all=true
    alice = login(gateway, "alice")
    assert not {c["id"] for c in get(gateway, alice, "/api/conversations")["data"]} & set(ids)
    everyone = get(gateway, login(gateway, "root"), "/api/conversations?all=true&limit=500")
    assert set(ids) <= {c["id"] for c in everyone["data"]}


def test_rename_and_truncate(gateway: Gateway) -> None:
    token = login(gateway, "bob")
    cid = uuid.uuid4().hex
    chat(gateway, token, "one", conversation=cid)
    chat(gateway, token, "two", conversation=cid)
    url = gateway.url + f"/api/conversations/{cid}"
    renamed = httpx.patch(url, json={"title": "  My   trip  "}, headers=bearer(token),
                          trust_env=False, timeout=30)  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["title"], renamed.json()["messages"]) == ("My trip", 4)
    other = login(gateway, "alice")
    assert httpx.patch(url, json={"title": "mine"}, headers=bearer(other),
                       trust_env=False).status_code == 404  # fmt: skip
    assert httpx.delete(url + "/messages?from_index=0", headers=bearer(other),
                        trust_env=False).status_code == 404  # fmt: skip
    cut = httpx.delete(url + "/messages?from_index=2", headers=bearer(token), trust_env=False)
    assert cut.status_code == 200, cut.text
    assert cut.json() == {"id": cid, "from_index": 2, "deleted": 2}
    left = get(gateway, token, f"/api/conversations/{cid}")["data"]
    assert [(m["index"], m["content"]) for m in left][:1] == [(0, "one")]
    assert len(left) == 2
    # regenerate: the next exchange goes on from there
    chat(gateway, token, "two again", conversation=cid)
    assert [m["content"] for m in get(gateway, token, f"/api/conversations/{cid}")["data"]][
        ::2
    ] == ["one", "two again"]
    bad = httpx.delete(url + "/messages?from_index=-1", headers=bearer(token), trust_env=False)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "from_index"


def test_models_show_only_what_the_key_may_use_and_mark_assistants(gateway: Gateway) -> None:
    made = cli(gateway, "keys", "create", "--user", "alice", "--name", "narrow",
               "--models", "fake-model")  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[0].strip()
    narrow = {c["id"] for c in get(gateway, key, "/v1/models")["data"]}
    assert narrow == {"fake-model"}
    cards = get(gateway, login(gateway, "alice"), "/v1/models")["data"]
    owners = {c["id"]: c["owned_by"] for c in cards}
    assert owners["assistant/helper"] == "enclave-assistant"
    assert owners["fake-model"] != "enclave-assistant"
