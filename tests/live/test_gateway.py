"""The gateway as users meet it: a real `enclave serve`, real fake upstreams, the openai SDK."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import ASK, Gateway, run_gateway

FAKE = "fake-model"
ALIAS = "qwen-alias"
pytestmark = pytest.mark.fake_upstream(models=[FAKE], tokens=12, context_length=2048)


def png_with_text(text: str, size: tuple[int, int] = (900, 160)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font=ImageFont.load_default(size=56))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(data: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(data)}}


@pytest.fixture(scope="module")
def vision_fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=["vl-model"], vision=True) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    fake: FakeUpstream, vision_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = {
        "engine": {"enabled": False, "embeddings": True, "ocr": True},
        "limits": {"max_body_bytes": "40MiB"},
        "upstreams": [
            {
                "name": "fake",
                "base_url": fake.base_url,
                "models": [FAKE],
                "aliases": {ALIAS: FAKE},
                "context_length": 2048,
            },
            {"name": "vision", "base_url": vision_fake.base_url, "models": ["vl-model"],
             "vision": True},
        ],
    }  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("home"), config) as running:
        yield running


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def post(gateway: Gateway, body: Any, path: str = "/v1/chat/completions") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        gateway.url + path, content=content, timeout=60, trust_env=False,
        headers={"content-type": "application/json"},
    )  # fmt: skip


def still_serving(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=FAKE, messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.choices[0].message.content


def hello(model: str = FAKE, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}


# -- the happy paths ------------------------------------------------------------------------


def test_streamed_chat_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=FAKE,
        messages=[{"role": "user", "content": "tell me about tar"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: tell me about tar")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert all(c.model == FAKE for c in chunks)


def test_non_streamed_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=FAKE, messages=[{"role": "user", "content": "tar exclude"}], max_tokens=4
    )
    assert reply.choices[0].message.content == "echo: tar exclude images=0"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4


def test_alias_reaches_upstream_under_its_own_name(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    reply = client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "who are you"}]
    )
    assert reply.model == ALIAS
    assert fake.stats()["last_request"]["model"] == FAKE
    chunks = list(
        client.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert {c.model for c in chunks} == {ALIAS}


def test_unknown_fields_pass_through(client: openai.OpenAI, fake: FakeUpstream) -> None:
    client.chat.completions.create(
        model=FAKE,
        messages=[{"role": "user", "content": "hi"}],
        seed=7,
        extra_body={"top_k": 5, "repetition_penalty": 1.1, "chat_template_kwargs": {"a": 1}},
    )
    sent = fake.stats()["last_request"]
    assert sent["top_k"] == 5
    assert sent["repetition_penalty"] == 1.1
    assert sent["chat_template_kwargs"] == {"a": 1}
    assert sent["seed"] == 7


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list().data}
    assert {FAKE, ALIAS, "vl-model", "multilingual-e5-small"} <= ids


def test_default_model_alias(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == FAKE


def test_embeddings_from_the_bundled_embedder(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="multilingual-e5-small", input=["如何查看磁盘空间", "how to check disk usage"]
    )
    assert [len(item.embedding) for item in result.data] == [384, 384]
    assert result.usage.prompt_tokens > 0
    assert result.model == "multilingual-e5-small"


def test_health_lists_upstreams(gateway: Gateway) -> None:
    body = httpx.get(gateway.url + "/health", trust_env=False).json()
    assert body["status"] == "ok"
    assert {u["name"] for u in body["upstreams"]} == {"fake", "vision", "embedder"}


def test_image_read_by_ocr_for_a_model_without_vision(gateway: Gateway, fake: FakeUpstream) -> None:
    content = [{"type": "text", "text": "what does it say?"}, image_part(png_with_text("HELLO 42"))]
    reply = post(gateway, hello(messages=[{"role": "user", "content": content}]))
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-enclave-ocr"] == "1"
    sent = fake.stats()["last_request"]["messages"][0]["content"]
    assert all(part["type"] == "text" for part in sent)
    ocr_text = sent[1]["text"]
    assert "OCR" in ocr_text
    assert "HELLO" in ocr_text


def test_image_passes_untouched_to_a_vision_model(
    gateway: Gateway, vision_fake: FakeUpstream
) -> None:
    image = image_part(png_with_text("HI"))
    body = hello("vl-model", messages=[{"role": "user", "content": [image]}])
    reply = post(gateway, body)
    assert reply.status_code == 200, reply.text
    assert "x-enclave-ocr" not in reply.headers
    assert vision_fake.stats()["last_request"]["messages"][0]["content"] == [image]


def test_access_log_line_per_request(gateway: Gateway) -> None:
    response = post(gateway, hello(), "/v1/chat/completions")
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while request_id not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in gateway.log().splitlines() if request_id in line)
    record = json.loads(line[line.index("{") :])
    assert record["path"] == "/v1/chat/completions"
    assert record["status"] == 200
    assert record["model"] == FAKE
    assert record["upstream"] == "fake"


def test_ask_through_the_gateway(gateway: Gateway) -> None:
    done = subprocess.run(
        [ASK, "--model", FAKE, "how", "are", "you"],
        env={"ENCLAVE_URL": gateway.url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("echo: how are you")


# -- streams that stop ----------------------------------------------------------------------


def only_upstream(name: str, base_url: str, models: list[str]) -> dict[str, Any]:
    """A gateway config with nothing but one remote upstream."""
    return {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": name, "base_url": base_url, "models": models}],
    }


def test_client_disconnect_cancels_the_upstream_request(tmp_path: Path) -> None:
    with (
        run_fake_upstream(models=[FAKE], tokens=400, itl_ms=20) as slow,
        run_gateway(tmp_path, only_upstream("slow", slow.base_url, [FAKE])) as gw,
    ):
        body = hello(stream=True)
        url = gw.v1 + "/chat/completions"
        with httpx.stream("POST", url, json=body, trust_env=False) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        deadline = time.monotonic() + 10
        while slow.stats()["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = slow.stats()
        assert stats["cancelled"] == 1
        assert stats["completed"] == 0


def test_upstream_dying_mid_stream_ends_with_an_error_event(tmp_path: Path) -> None:
    with (
        run_fake_upstream(models=[FAKE], tokens=400, itl_ms=20) as doomed,
        run_gateway(tmp_path, only_upstream("doomed", doomed.base_url, [FAKE])) as gw,
    ):
        client = openai.OpenAI(base_url=gw.v1, api_key="x", max_retries=0)
        stream = client.chat.completions.create(**hello(), stream=True)
        first = next(iter(stream))
        assert first.choices
        doomed.process.send_signal(signal.SIGKILL)
        with pytest.raises(openai.APIError, match="doomed"):
            for _ in stream:
                pass
        still_ok = httpx.get(gw.url + "/v1/models", trust_env=False)
        assert still_ok.status_code == 200
