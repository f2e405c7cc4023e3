"""``enclave upstreams`` against a real HTTP server on loopback serving a fixed /health."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from enclave.cli.main import main
from enclave.cli.upstreams import exit_code, local_url, render
from enclave.config import load_settings
from tests.fakes.procs import free_port

OK: dict[str, Any] = {
    "status": "ok",
    "version": "0.1.0",
    "pools": [
        {"model": "qwen", "kind": "chat", "members": ["gpu1", "gpu2"], "available": 2, "queued": 0}
    ],
    "upstreams": [
        {
            "name": "gpu1",
            "base_url": "http://10.0.0.1:8000/v1",
            "state": "healthy",
            "breaker": "closed",
            "outstanding": 3,
            "max_concurrency": 6,
            "weight": 1,
            "models": ["qwen"],
            "served": 120,
            "failures": 0,
            "last_error": "",
            "detail": "",
        },
        {
            "name": "gpu-second",
            "base_url": "http://10.0.0.2:8000/v1",
            "state": "unhealthy",
            "breaker": "open",
            "outstanding": 0,
            "max_concurrency": 0,
            "weight": 2.5,
            "models": ["qwen", "qwen-vl"],
            "served": 7,
            "failures": 4,
            "last_error": "connect: connection refused",
            "detail": "",
        },
    ],
}
DEGRADED = {**OK, "status": "degraded"}
UNAVAILABLE = {**OK, "status": "unavailable"}


class Health(BaseHTTPRequestHandler):
    status = 200
    body = b"{}"

    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_error(404)
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def health_server(body: Any, status: int = 200) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering /health with ``body``; yields its URL."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler = type("FixedHealth", (Health,), {"status": status, "body": raw})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


pytestmark = pytest.mark.usefixtures("clean_env")


def upstreams(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["upstreams", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ok_prints_aligned_table_and_pools(capsys: pytest.CaptureFixture[str]) -> None:
    with health_server(OK) as url:
        code, out, err = upstreams(capsys, "--url", url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"enclave 0.1.0 at {url}: ok"
    header, first, second = lines[2], lines[3], lines[4]
    assert header.split("  ")[0] == "NAME"
    assert first[header.index("STATE") :].startswith("healthy")
    assert second[header.index("BREAKER") :].startswith("open")
    assert first.split() == ["gpu1", "healthy", "closed", "3/6", "1", "qwen"]
    assert second[header.index("IN FLIGHT") :].startswith("0/∞")
    assert second[header.index("WEIGHT") :].startswith("2.5")
    assert second[header.index("MODELS") :].startswith("qwen,qwen-vl")
    assert second[header.index("LAST ERROR") :] == "connect: connection refused"
    assert lines[-1] == "pools: qwen (chat) 2/2 available, 0 queued"


def test_degraded_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with health_server(DEGRADED) as url:
        code, out, _ = upstreams(capsys, "--url", url)
    assert code == 2
    assert out.startswith(f"enclave 0.1.0 at {url}: degraded\n")


def test_503_body_is_still_shown_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with health_server(UNAVAILABLE, status=503) as url:
        code, out, err = upstreams(capsys, "--url", url + "/")
    assert (code, err) == (1, "")
    assert f"at {url}: unavailable" in out
    assert "gpu-second" in out


@pytest.mark.parametrize(
    ("status", "code"),
    [("ok", 0), ("degraded", 2), ("unavailable", 1), ("loading", 1), (None, 1)],
)
def test_exit_codes(status: str | None, code: int) -> None:
    assert exit_code({"status": status}) == code


def test_json_prints_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    with health_server(DEGRADED) as url:
        code, out, _ = upstreams(capsys, "--url", url, "--json")
    assert code == 2
    assert json.loads(out) == DEGRADED


def test_missing_keys_do_not_crash(capsys: pytest.CaptureFixture[str]) -> None:
    old = {"status": "ok", "upstreams": [{"name": "gpu1"}, {"state": "down"}, "junk"]}
    with health_server(old) as url:
        code, out, _ = upstreams(capsys, "--url", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"enclave at {url}: ok"
    assert lines[3].split() == ["gpu1", "?", "?", "?/?", "?", "-"]
    assert lines[4].split() == ["?", "down", "?", "?/?", "?", "-"]
    assert lines[-1] == "pools: none"


def test_render_without_upstreams() -> None:
    text = render({"status": "loading", "pools": [{"model": "m"}]}, "http://x")
    assert text.splitlines() == [
        "enclave at http://x: loading",
        "",
        "no upstream members",
        "",
        "pools: m ?/0 available, ? queued",
    ]


def test_not_a_health_report_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with health_server(b"<html>hello</html>", status=200) as url:
        code, out, err = upstreams(capsys, "--url", url)
    assert (code, out) == (1, "")
    assert "without a health report" in err


def test_unreachable_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = upstreams(capsys, "--url", url)
    assert (code, out) == (1, "")
    assert err == f"enclave: cannot reach enclave at {url} — is `enclave serve` running?\n"


def test_enclave_url_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with health_server(OK) as url:
        monkeypatch.setenv("ENCLAVE_URL", url)
        code, out, _ = upstreams(capsys)
    assert code == 0
    assert f"at {url}: ok" in out


def test_default_url_from_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with health_server(OK) as url:
        port = url.rsplit(":", 1)[1]
        monkeypatch.setenv("ENCLAVE_HOST", "0.0.0.0")
        monkeypatch.setenv("ENCLAVE_PORT", port)
        code, out, _ = upstreams(capsys)
    assert code == 0
    assert f"enclave 0.1.0 at http://127.0.0.1:{port}: ok" in out


def test_local_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_PORT", "9000")
    monkeypatch.setenv("ENCLAVE_HOST", "10.1.2.3")
    assert local_url(load_settings()) == "http://10.1.2.3:9000"
    monkeypatch.setenv("ENCLAVE_HOST", "::1")
    assert local_url(load_settings()) == "http://[::1]:9000"
    monkeypatch.setenv("ENCLAVE_HOST", "0.0.0.0")
    assert local_url(load_settings()) == "http://127.0.0.1:9000"


def test_a_bare_status_says_the_members_need_a_key() -> None:
    text = render({"status": "ok"}, "http://x")
    assert text.splitlines()[-1] == "the members are shown to authenticated callers: --api-key KEY"
