"""Slow, idle and malformed clients against a real `enclave serve`, as an attacker meets it:
raw sockets that trickle headers or bodies, stay idle, open more connections than the cap
or leave in the middle of a body; bodies nested deep, with lone surrogates or the wrong
types. Each is refused or closed within a (generous) bound, with the OpenAI error naming
the limit, and a normal client is served meanwhile."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, audit_records, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

BOUND = 30.0  # seconds: far above every timeout below, so only a hang fails a test
PASSWORD = "a-long-enough-password"
SERVER = {"header_timeout_s": 1.5, "body_timeout_s": 2.0, "idle_timeout_s": 1.0}


def settings(fake: FakeUpstream, server: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"mode": "on"},
        "server": server,
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
    }


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("slow"), settings(fake, SERVER)) as gw:
        add_user(gw, "bob", "user", PASSWORD)
        yield gw


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    made = cli(gateway, "keys", "create", "--user", "bob", "--name", "slow")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def chat(gateway: Gateway, key: str, **extra: Any) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.v1 + "/chat/completions", json=body, trust_env=False,
                      headers={"Authorization": f"Bearer {key}"}, timeout=BOUND)  # fmt: skip


def error_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- raw sockets -----------------------------------------------------------------------


def connect(gateway: Gateway) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=BOUND)
    sock.settimeout(BOUND)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (within ``BOUND``)."""
    received = b""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; it sent {received!r}")


class Trickle:
    """Sends ``data`` one byte at a time, a few per second, until the server hangs up."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sock, data), daemon=True)
        self.thread.start()

    def _run(self, sock: socket.socket, data: bytes) -> None:
        for byte in data:
            if self.stop.wait(0.2):  # the attack's own pace, not a wait for a condition
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    def __enter__(self) -> Trickle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(BOUND)


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    error: dict[str, Any] = json.loads(body)["error"]
    return status, error


def test_trickled_headers_get_408_and_are_closed(gateway: Gateway, key: str) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        with Trickle(sock, b"X-Slow: " + b"a" * 400 + b"\r\n\r\n"):
            assert chat(gateway, key).status_code == 200  # a normal client meanwhile
            response = until_closed(sock)
    status, error = status_and_error(response)
    assert status == 408
    assert "server.header_timeout_s" in error["message"]
    assert error["code"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        status, error = status_and_error(until_closed(sock))
    assert status == 408
    assert "server.header_timeout_s" in error["message"]


def test_an_idle_kept_alive_connection_is_closed(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        response = until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.count(b"HTTP/1.1 ") == 1  # closed quietly: no 408 after the answer


def test_a_trickled_body_gets_408_naming_the_setting(gateway: Gateway, key: str) -> None:
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n"
        )
        with Trickle(sock, b'{"username": "' + b"b" * 490):
            assert chat(gateway, key).status_code == 200
            status, error = status_and_error(until_closed(sock))
    assert status == 408
    assert "server.body_timeout_s" in error["message"]


def test_more_connections_than_the_cap_get_503(
    fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = {"max_connections": 3, "header_timeout_s": 120}
    with run_gateway(tmp_path_factory.mktemp("cap"), settings(fake, server)) as gw:
        held = [connect(gw) for _ in range(3)]
        try:
            with connect(gw) as extra:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                status, error = status_and_error(until_closed(extra))
            assert status == 503
            assert error["type"] == "service_unavailable"
            assert "server.max_connections" in error["message"]
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + BOUND  # the server sees the closes, then serves again
        while httpx.get(gw.url + "/health", trust_env=False).status_code != 200:
            assert time.monotonic() < deadline, "never served again after the cap emptied"
            time.sleep(0.05)


def test_a_client_gone_mid_body_is_a_499_without_traceback(gateway: Gateway, key: str) -> None:
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-gone-mid-body\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b'Content-Length: 5000\r\n\r\n{"model": "fake-model", '
        )
    deadline = time.monotonic() + BOUND
    while '"request_id": "req-gone-mid-body"' not in gateway.log():
        assert time.monotonic() < deadline, "the call left no access-log line"
        time.sleep(0.05)
    line = next(x for x in gateway.log().splitlines() if x.startswith("{") and "gone-mid" in x)
    assert json.loads(line)["status"] == 499
    assert "Traceback" not in gateway.log()
    record = next(r for r in audit_records(gateway) if r["request_id"] == "req-gone-mid-body")
    assert record["status"] == 499


def test_two_authorization_headers_are_a_400(gateway: Gateway, key: str) -> None:
    headers = [("Authorization", f"Bearer {key}"), ("Authorization", "Bearer sk-enc-other")]
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
    url = gateway.v1 + "/chat/completions"
    reply = httpx.post(url, headers=headers, json=body, trust_env=False, timeout=BOUND)
    error = error_of(reply, 400)
    assert "Authorization" in error["message"]


# --- bodies that gave 500s -------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def raw_post(gateway: Gateway, path: str, body: str, key: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + path, content=body.encode(), headers=headers,
                      trust_env=False, timeout=BOUND)  # fmt: skip


@pytest.mark.parametrize("depth", [100, 1000, 30_000])
def test_deep_json_on_the_open_login_route_is_a_400(gateway: Gateway, depth: int) -> None:
    body = f'{{"username": {nested(depth)}, "password": "x"}}'
    error = error_of(raw_post(gateway, "/api/auth/login", body), 400)
    assert "limits.max_json_depth" in error["message"]


def test_deep_json_in_a_chat_is_a_400(gateway: Gateway, key: str) -> None:
    body = f'{{"model": "fake-model", "messages": [{{"role": "user", "content": "x"}}], "x": {nested(1000)}}}'  # noqa: E501
    error = error_of(raw_post(gateway, "/v1/chat/completions", body, key), 400)
    assert "limits.max_json_depth" in error["message"]
    shallow = body.replace(nested(1000), nested(20))
    assert raw_post(gateway, "/v1/chat/completions", shallow, key).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/auth/login", r'{"username": "bob\ud800", "password": "x"}', "username"),
        ("/api/auth/refresh", r'{"refresh_token": "\udfff"}', "refresh_token"),
        ("/v1/chat/completions",
         r'{"model": "fake-model", "messages": [{"role": "user", "content": "a\ud800b"}]}',
         "messages[0].content"),
        ("/v1/chat/completions",
         r'{"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "\ud83d": 1}',
         "\\ud83d"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_in_any_string_is_a_400(
    gateway: Gateway, key: str, path: str, body: str, param: str
) -> None:
    error = error_of(raw_post(gateway, path, body, key if path.startswith("/v1") else None), 400)
    assert error["param"] == param
    assert "surrogate" in error["message"]


def test_a_surrogate_pair_is_text(gateway: Gateway, key: str) -> None:
    body = r'{"model": "fake-model", "messages": [{"role": "user", "content": "\ud83d\ude00 \\ud800"}]}'  # noqa: E501
    assert raw_post(gateway, "/v1/chat/completions", body, key).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", "10"), ("max_tokens", True), ("stream", "yes"), ("stream", 1),
     ("temperature", "0.5"), ("n", 1.0), ("n", 129), ("stop", ["a", "b", "c", "d", "e"])],
)  # fmt: skip
def test_wrong_types_and_counts_are_400s_naming_the_field(
    gateway: Gateway, key: str, field: str, value: Any
) -> None:
    error = error_of(chat(gateway, key, **{field: value}), 400)
    assert error["param"] == field


def test_what_openai_accepts_still_passes(gateway: Gateway, key: str) -> None:
    for extra in ({"temperature": 1}, {"n": 1}, {"stop": ["a", "b", "c", "d"]}, {"stop": "x"}):
        assert chat(gateway, key, **extra).status_code == 200, extra


def test_no_request_above_left_a_traceback(gateway: Gateway) -> None:
    assert not re.search(r"Traceback|Exception in ASGI", gateway.log())
