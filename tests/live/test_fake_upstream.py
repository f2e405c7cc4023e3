"""The fake upstream, driven by the official ``openai`` SDK over a real loopback socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionContentPartParam

from tests.fakes.procs import FakeUpstream, run_fake_upstream

pytestmark = pytest.mark.live
MODEL = "fake-model"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=(MODEL, "other"), vision=True) as upstream:
        yield upstream


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
