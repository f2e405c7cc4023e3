"""Every kind of bad input gets an OpenAI error with the right status, and loses nothing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.procs import run_fake_upstream
from tests.gateway import Gateway, health_of, run_gateway, wait_member
from tests.live.test_gateway import FAKE, data_url, hello, only_upstream, png_with_text, post


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_fake_upstream(models=[FAKE], context_length=2048) as fake:
        config = {
            "engine": {"enabled": False, "embeddings": True, "ocr": False},
            "limits": {"max_body_bytes": "40MiB"},
            "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": [FAKE],
                           "context_length": 2048}],
        }  # fmt: skip
        with run_gateway(tmp_path_factory.mktemp("home"), config) as running:
            yield running


@pytest.fixture(autouse=True)
def keeps_serving(gateway: Gateway) -> Iterator[None]:
    yield
    reply = post(gateway, hello())
    assert reply.status_code == 200, "the gateway must keep serving after bad input"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def with_images(*urls: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "look"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return hello(messages=[{"role": "user", "content": parts}])


def test_malformed_json(gateway: Gateway) -> None:
    error = error_of(post(gateway, b'{"model": "fake-model", "messages": ['), 400)
    assert error["type"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize("messages", [None, []])
def test_missing_or_empty_messages(gateway: Gateway, messages: list[Any] | None) -> None:
    body: dict[str, Any] = {"model": FAKE}
    if messages is not None:
        body["messages"] = messages
    error = error_of(post(gateway, body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert "messages" in error["message"]


def test_bad_role_names_the_field(gateway: Gateway) -> None:
    error = error_of(post(gateway, hello(messages=[{"role": "wizard", "content": "x"}])), 400)
    assert error["param"] == "messages[0].role"


def test_unknown_model(gateway: Gateway) -> None:
    error = error_of(post(gateway, hello("no-such-model")), 404)
    assert error["code"] == "model_not_found"
    assert "no-such-model" in error["message"]
    assert FAKE in error["message"]


def test_unknown_embedding_model(gateway: Gateway) -> None:
    body = {"model": "nope", "input": "x"}
    assert error_of(post(gateway, body, "/v1/embeddings"), 404)["code"] == "model_not_found"


def test_more_than_eight_images(gateway: Gateway) -> None:
    url = data_url(png_with_text("x", (40, 20)))
    error = error_of(post(gateway, with_images(*[url] * 9)), 400)
    assert "8" in error["message"]
    assert "limits.max_images" in error["message"]


def test_image_over_20_mib(gateway: Gateway) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20)
    error = error_of(post(gateway, with_images(data_url(big))), 413)
    assert "20" in error["message"]
    assert "limits.max_image_bytes" in error["message"]


def test_image_that_is_not_an_image(gateway: Gateway) -> None:
    url = "data:image/png;base64," + base64.b64encode(b"%PDF-1.7 not a picture").decode()
    error = error_of(post(gateway, with_images(url)), 400)
    assert "PNG/JPEG/WebP/GIF/BMP" in error["message"]


def test_body_over_the_limit(gateway: Gateway) -> None:
    huge = hello(messages=[{"role": "user", "content": "x" * (41 * 2**20)}])
    error = error_of(post(gateway, huge), 413)
    assert "limits.max_body_bytes" in error["message"]


def test_max_tokens_beyond_the_context(gateway: Gateway) -> None:
    error = error_of(post(gateway, hello(max_tokens=100_000)), 400)
    assert error["code"] == "context_length_exceeded"
    assert "2048" in error["message"]
    assert error["param"] == "max_tokens"


def test_upstream_4xx_passes_on_with_its_message(gateway: Gateway) -> None:
    error = error_of(post(gateway, hello(temperature=5)), 400)
    assert error["param"] == "temperature"


def test_engine_not_ready_answers_503_with_retry_after(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(4096))  # looks like a GGUF, cannot load
    config = {"engine": {"model": str(broken), "served_model_names": ["local"],
                         "embeddings": False, "ocr": False}}  # fmt: skip
    with run_gateway(tmp_path, config, health="/v1/models") as gw:
        health = httpx.get(gw.url + "/health", trust_env=False)
        assert health.status_code == 503
        assert int(health.headers["retry-after"]) > 0
        reply = post(gw, hello("local"))
        error = error_of(reply, 503)
        assert error["code"] == "engine_loading"
        assert int(reply.headers["retry-after"]) > 0


def test_upstream_down_is_a_503_naming_it(tmp_path: Path) -> None:
    from tests.fakes.procs import free_port

    config = only_upstream("gone", f"http://127.0.0.1:{free_port()}/v1", ["m"])
    with run_gateway(tmp_path, config, health="/v1/models") as gw:
        member = wait_member(gw, "gone", lambda m: m["state"] == "unhealthy")
        assert "health check of gone failed" in member["last_error"]
        assert health_of(gw)[0] == 503
        reply = post(gw, hello("m"))
        error = error_of(reply, 503)
        assert error["code"] == "no_healthy_upstream"
        assert "gone" in error["message"]
        assert int(reply.headers["retry-after"]) > 0
