"""The fake upstream, driven by the official ``openai`` SDK over a real loopback socket."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionContentPartParam

from tests.fakes.procs import FakeUpstream, run_fake_upstream

MODEL = "fake-model"
pytestmark = pytest.mark.fake_upstream(models=(MODEL, "other"), vision=True)


def sdk(upstream: FakeUpstream, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key=api_key, max_retries=0)


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    fake.reset()
    with sdk(fake) as client:
        yield client


def test_streamed_with_usage(client: openai.OpenAI, fake: FakeUpstream) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=8,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    text = "".join(p for p in pieces if p)
    assert text == "echo: hello there images=0 texts=1 t6 t7 t8"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    assert fake.stats()["completed"] == 1


def test_one_content_token_per_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a b c"}], stream=True, max_tokens=5
    )
    contents = [c.choices[0].delta.content for c in stream if c.choices]
    assert contents == ["", "echo:", " a", " b", " c", " images=0", None]


def test_not_streamed(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is up"},
        ],
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.startswith("echo: what is up images=0 texts=2")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16


def test_image_parts_are_counted(client: openai.OpenAI) -> None:
    image: ChatCompletionContentPartParam = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    text: ChatCompletionContentPartParam = {"type": "text", "text": "look"}
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [text, image, image]}]
    )
    assert "images=2 texts=1" in (reply.choices[0].message.content or "")


def test_stop_is_honoured(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}], stop=[" three"]
    )
    assert reply.choices[0].message.content == "echo: one two"
    assert reply.choices[0].finish_reason == "stop"


def test_extra_fields_echoed_in_header(client: openai.OpenAI, fake: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        extra_body={"top_k": 5, "guided_json": {"type": "object"}},
    )
    assert raw.headers["x-fake-extras"] == "guided_json,top_k"
    assert fake.stats()["last_request"]["top_k"] == 5


def test_odd_extra_field_names_come_back_escaped(client: openai.OpenAI) -> None:
    """A fuzzer's field names (non-ASCII, control characters) must not make it a 500."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body={"é\r\u2603": 1}
    )
    assert raw.headers["x-fake-extras"] == "\\xe9\\r\\u2603"


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL, "other"]
    assert models.data[0].model_extra == {"root": MODEL, "parent": None, "max_model_len": 4096}


@pytest.mark.parametrize("encoding", ["float", None])
def test_embeddings(client: openai.OpenAI, fake: FakeUpstream, encoding: str | None) -> None:
    texts = ["alpha", "beta", "alpha"]
    if encoding is None:  # the SDK then asks for base64 and decodes it itself
        result = client.embeddings.create(model=MODEL, input=texts)
    else:
        result = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    vectors = [item.embedding for item in result.data]
    assert all(len(v) == 8 for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2])
    assert vectors[0] != pytest.approx(vectors[1])
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert fake.stats()["embeddings"] == 1


def test_unknown_model_is_404_envelope(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "The model `nope` does not exist.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


def test_context_length_is_enforced(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 4096"):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=5000
        )


def test_client_disconnect_is_counted_as_cancelled() -> None:
    with run_fake_upstream(itl_ms=100, tokens=50) as slow, sdk(slow) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
        for index, _ in enumerate(stream):
            if index == 3:
                break
        stream.close()
        deadline = time.monotonic() + 5
        while slow.stats()["cancelled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = slow.stats()
    assert (stats["requests"], stats["completed"], stats["cancelled"]) == (1, 0, 1)


def test_api_key_and_scripted_failure() -> None:
    with run_fake_upstream(api_key="secret", fail_status=503) as guarded:
        with sdk(guarded, "wrong") as bad, pytest.raises(openai.AuthenticationError):
            bad.models.list()
        with sdk(guarded, "secret") as good:
            assert [m.id for m in good.models.list().data] == [MODEL]
            with pytest.raises(openai.InternalServerError) as caught:
                good.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}]
                )
    assert caught.value.status_code == 503


def test_text_only_model_refuses_images() -> None:
    image: ChatCompletionContentPartParam = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    with (
        run_fake_upstream() as text_only,
        sdk(text_only) as client,
        pytest.raises(openai.BadRequestError, match="does not support image input"),
    ):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image]}])


# --- run-time behaviour: POST /_fake/config and the new startup flags -------------------

CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def alpha() -> Iterator[FakeUpstream]:
    with run_fake_upstream(name="alpha", tokens=4) as upstream:
        yield upstream


@pytest.fixture
def scripted(alpha: FakeUpstream) -> Iterator[FakeUpstream]:
    alpha.reset()
    yield alpha
    alpha.restore()


def post_chat(fake: FakeUpstream, timeout: float = 5.0, **extra: Any) -> httpx.Response:
    url = f"{fake.base_url}/chat/completions"
    return httpx.post(url, json={**CHAT, **extra}, timeout=timeout, trust_env=False)


def get(url: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout, trust_env=False)


def data_lines(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def content(data: str) -> str | None:
    choices = json.loads(data)["choices"]
    return choices[0]["delta"].get("content") if choices else None


def test_config_changes_options_live(scripted: FakeUpstream) -> None:
    effective = scripted.configure(tokens=3, ttft_ms=1)
    assert (effective["tokens"], effective["ttft_ms"], effective["name"]) == (3, 1, "alpha")
    assert effective["models"] == [MODEL]
    assert scripted.configure() == effective
    usage = post_chat(scripted).json()["usage"]
    assert usage["completion_tokens"] == 3
    assert scripted.restore()["tokens"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {"nope": 1},
        {"models": ["x"]},
        {"name": "other"},
        {"hang": 1},
        {"tokens": "3"},
        {"tokens": True},
        {"itl_ms": -1},
        {"fail_status": 42},
        {"tokens": None},
        [1],
    ],
)
def test_config_rejects_bad_options(scripted: FakeUpstream, body: object) -> None:
    before = scripted.configure()
    response = httpx.post(f"{scripted.root}/_fake/config", json=body, trust_env=False)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert scripted.configure() == before


def test_name_in_header_and_stats(scripted: FakeUpstream) -> None:
    assert post_chat(scripted).headers["x-fake-name"] == "alpha"
    embedded = httpx.post(
        f"{scripted.base_url}/embeddings", json={"model": MODEL, "input": "x"}, trust_env=False
    )
    assert embedded.headers["x-fake-name"] == "alpha"
    scripted.configure(fail_status=503)
    assert post_chat(scripted).headers["x-fake-name"] == "alpha"
    assert scripted.stats()["name"] == "alpha"


def test_hang_is_cancelled_on_client_timeout(scripted: FakeUpstream) -> None:
    assert scripted.configure(hang=True)["hang"] is True
    with pytest.raises(httpx.ReadTimeout):
        post_chat(scripted, timeout=0.3)
    stats = scripted.wait_stats(lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
    assert (stats["requests"], stats["completed"], stats["max_in_flight"]) == (1, 0, 1)


def test_hanging_stream_sends_no_headers(scripted: FakeUpstream) -> None:
    scripted.configure(hang=True)
    url = f"{scripted.base_url}/chat/completions"
    body = {**CHAT, "stream": True}
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", url, json=body, timeout=0.3, trust_env=False),
    ):
        pass  # the timeout comes while waiting for the status line
    stats = scripted.wait_stats(lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
    assert stats["completed"] == 0


def test_held_requests_count_in_flight_and_are_answered_when_released(
    scripted: FakeUpstream,
) -> None:
    scripted.configure(hang=True)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(post_chat, scripted) for _ in range(3)]
        # in flight from arrival, counted as a request once its body is read
        held = scripted.wait_stats(lambda s: s["in_flight"] == 3 and s["requests"] == 3)
        assert held["completed"] == 0
        assert not any(future.done() for future in futures)
        scripted.configure(hang=False)
        replies = [future.result() for future in futures]
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert replies[0].json()["choices"][0]["message"]["content"].startswith("echo: hi")
    stats = scripted.wait_stats(lambda s: s["in_flight"] == 0)
    assert (stats["completed"], stats["max_in_flight"]) == (3, 3)
    scripted.reset()
    assert scripted.stats()["max_in_flight"] == 0


def test_fail_times_then_recovers(scripted: FakeUpstream) -> None:
    scripted.configure(fail_times=2)
    replies = [post_chat(scripted) for _ in range(3)]
    assert [reply.status_code for reply in replies] == [500, 500, 200]
    assert replies[0].json()["error"]["message"] == "scripted failure"
    assert scripted.configure(fail_times=1, fail_status=503)["fail_times"] == 1
    assert [post_chat(scripted).status_code for _ in range(2)] == [503, 200]
    effective = scripted.configure()
    assert (effective["fail_times"], effective["fail_status"]) == (0, None)
    assert scripted.stats()["requests"] == 5


def test_stall_after_stops_mid_stream(scripted: FakeUpstream) -> None:
    scripted.configure(stall_after=2)
    url = f"{scripted.base_url}/chat/completions"
    body = {**CHAT, "stream": True}
    timeout = httpx.Timeout(5.0, read=0.4)
    with httpx.stream("POST", url, json=body, timeout=timeout, trust_env=False) as response:
        assert response.status_code == 200
        lines = data_lines(response)
        seen = [content(next(lines)) for _ in range(3)]
        with pytest.raises(httpx.ReadTimeout):
            next(lines)  # the stream stays open and silent
    assert seen == ["", "echo:", " hi"]
    stats = scripted.wait_stats(lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
    assert stats["completed"] == 0


def test_stalled_stream_goes_on_when_cleared(scripted: FakeUpstream) -> None:
    scripted.configure(stall_after=0)
    url = f"{scripted.base_url}/chat/completions"
    with httpx.stream(
        "POST", url, json={**CHAT, "stream": True}, timeout=5.0, trust_env=False
    ) as response:
        lines = data_lines(response)
        assert content(next(lines)) == ""  # the role chunk, then silence
        assert scripted.stats()["in_flight"] == 1
        scripted.configure(stall_after=None)
        rest = list(lines)
    assert [content(data) for data in rest[:4]] == ["echo:", " hi", " images=0", " texts=1"]
    assert rest[-1] == "[DONE]"
    assert scripted.wait_stats(lambda s: s["in_flight"] == 0)["completed"] == 1


def test_health_status_and_health_checks(scripted: FakeUpstream) -> None:
    assert get(f"{scripted.root}/health").status_code == 200
    scripted.configure(health_status=503)
    assert get(f"{scripted.root}/health").status_code == 503
    assert get(f"{scripted.base_url}/models").status_code == 200
    stats = scripted.stats()
    assert (stats["health_checks"], stats["requests"]) == (3, 0)


def test_hang_health(scripted: FakeUpstream) -> None:
    scripted.configure(hang_health=True)
    for url in (f"{scripted.root}/health", f"{scripted.base_url}/models"):
        with pytest.raises(httpx.ReadTimeout):
            get(url, timeout=0.3)
    assert post_chat(scripted).status_code == 200
    scripted.configure(hang_health=False)
    assert get(f"{scripted.root}/health").status_code == 200
    assert scripted.stats()["health_checks"] == 3


def test_no_health_and_no_stream_usage() -> None:
    with run_fake_upstream(no_health=True, no_stream_usage=True, name="ollama-like") as fake:
        assert get(f"{fake.root}/health").status_code == 404
        models = get(f"{fake.base_url}/models")
        assert models.status_code == 200
        assert models.headers["x-fake-name"] == "ollama-like"
        assert [card["id"] for card in models.json()["data"]] == [MODEL]
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        url = f"{fake.base_url}/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=5.0, trust_env=False) as response:
            seen = list(data_lines(response))
        assert seen[-1] == "[DONE]"
        assert all("usage" not in json.loads(data) for data in seen[:-1])
        assert fake.stats()["health_checks"] == 1


def test_startup_hang_and_health_status() -> None:
    with run_fake_upstream(hang=True, health_status=503) as fake:
        assert get(f"{fake.root}/health").status_code == 503
        effective = fake.configure()
        assert (effective["hang"], effective["health_status"], effective["name"]) == (
            True,
            503,
            "fake",
        )
        with pytest.raises(httpx.ReadTimeout):
            post_chat(fake, timeout=0.3)
        fake.configure(hang=False, health_status=200)
        assert post_chat(fake).status_code == 200
        assert get(f"{fake.root}/health").status_code == 200
        assert fake.restore()["hang"] is True


def test_restart_on_the_same_port_after_kill() -> None:
    with (
        run_fake_upstream(name="gamma") as fake,
        httpx.Client(trust_env=False, timeout=5.0) as client,
    ):
        url = f"{fake.base_url}/chat/completions"
        assert client.post(url, json=CHAT).status_code == 200  # a kept-alive connection
        first = fake.process
        fake.kill()
        assert first.returncode == -signal.SIGKILL
        with pytest.raises(httpx.TransportError):
            client.post(url, json=CHAT)
        fake.restart()
        assert fake.process is not first
        reply = client.post(url, json=CHAT)
        assert (reply.status_code, reply.headers["x-fake-name"]) == (200, "gamma")
        assert fake.stats()["requests"] == 1  # a fresh process
        fake.kill()
        with run_fake_upstream(port=fake.port, name="delta") as again:
            assert again.base_url == fake.base_url
            assert client.post(url, json=CHAT).headers["x-fake-name"] == "delta"
