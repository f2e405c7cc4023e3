"""`enclave serve` with the real llama.cpp engine and the tiny SmolLM2 model."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.engine.conftest import prepare
from tests.gateway import ASK, Gateway, run_gateway
from tests.live.test_gateway import image_part, png_with_text, post

TINY = "smollm2-135m-instruct"
CONFIG: dict[str, Any] = {
    "engine": {"model": TINY, "ctx_size": 4096, "parallel": 2, "embeddings": False, "ocr": True}
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine-home")
    prepare(path, TINY)
    return path


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[Gateway]:
    with run_gateway(home, CONFIG, timeout=120) as running:
        yield running


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def health(gateway: Gateway) -> httpx.Response:
    return httpx.get(gateway.url + "/health", trust_env=False, timeout=5)


def engine_state(gateway: Gateway) -> dict[str, Any]:
    body = health(gateway).json()
    state: dict[str, Any] = next(u for u in body["upstreams"] if u["name"] == "engine")
    return state


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it holds no memory and serves nothing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def ask_tiny(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "Name three colors."}],
        max_tokens=16,
        temperature=0,
        **extra,
    )


def test_health_reports_the_ready_engine(gateway: Gateway) -> None:
    response = health(gateway)
    assert response.status_code == 200
    state = engine_state(gateway)
    assert state["state"] == "healthy"
    assert alive(state["pid"])


def test_models_report_the_context_per_request(client: openai.OpenAI) -> None:
    card = next(m for m in client.models.list().data if m.id == TINY)
    assert card.model_extra is not None
    assert card.model_extra["max_model_len"] == 2048  # 4096 shared by 2 slots


def test_streamed_answer_with_usage(client: openai.OpenAI) -> None:
    chunks = list(ask_tiny(client, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    usage = chunks[-1].usage
    assert usage is not None
    assert 0 < usage.completion_tokens <= 16


def test_non_streamed_answer(client: openai.OpenAI) -> None:
    reply = ask_tiny(client)
    assert reply.model == TINY
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 0


def test_multi_turn_reuses_the_cached_prefix(client: openai.OpenAI) -> None:
    history: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are a terse assistant. " * 20},
        {"role": "user", "content": "What is tar?"},
    ]
    first = client.chat.completions.create(
        model=TINY, messages=history, max_tokens=12, temperature=0
    )
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And gzip?"},
    ]
    second = client.chat.completions.create(
        model=TINY, messages=history, max_tokens=12, temperature=0
    )
    assert first.usage is not None
    assert second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens is not None
    assert details.cached_tokens >= first.usage.prompt_tokens - 4


def test_max_tokens_beyond_the_context_is_refused(gateway: Gateway) -> None:
    body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}
    reply = post(gateway, body)
    assert reply.status_code == 400
    assert "2048" in reply.json()["error"]["message"]


def test_screenshot_text_reaches_the_model_by_ocr(gateway: Gateway) -> None:
    content = [{"type": "text", "text": "Repeat the text."}, image_part(png_with_text("ERROR 42"))]
    body = {"model": TINY, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    reply = post(gateway, body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-enclave-ocr"] == "1"
    # The image became text: the prompt is far longer than the question alone.
    assert reply.json()["usage"]["prompt_tokens"] > 20


def test_ask_streams_from_the_engine(gateway: Gateway) -> None:
    done = subprocess.run(
        [ASK, "--model", TINY, "--max-tokens", "12", "Say", "hello"],
        env={"ENCLAVE_URL": gateway.url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_killed_engine_is_restarted(gateway: Gateway, client: openai.OpenAI) -> None:
    before = engine_state(gateway)
    os.kill(before["pid"], signal.SIGKILL)
    wait_until(lambda: health(gateway).status_code == 503, 15, "the gateway to notice")
    wait_until(lambda: health(gateway).status_code == 200, 60, "the engine to come back")
    after = engine_state(gateway)
    assert after["restarts"] == before["restarts"] + 1
    assert after["pid"] != before["pid"]
    assert ask_tiny(client).choices[0].message.content


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_no_orphan_engine_when_the_gateway_stops(home: Path, sig: signal.Signals) -> None:
    with run_gateway(home, CONFIG, timeout=120) as gw:
        child = engine_state(gw)["pid"]
        gw.running.process.send_signal(sig)
        gw.running.process.wait(30)
        wait_until(lambda: not alive(child), 15, f"the engine to exit after {sig.name}")
        if sig != signal.SIGKILL:
            assert "engine stopped" in gw.log()
