"""What a client receives from a relayed stream, byte for byte.

The relay passes events through untouched where nothing in them must change; these tests
hold it to the bytes. Each one asks the fake upstream directly for the same stream the
gateway asks for, applies the one change the gateway is meant to make (the model renamed,
the usage chunk it asked for on the client's behalf removed, an error event at the end),
and compares that with what the gateway sent. Only the chunk id and ``created`` (a counter
and the clock, different between the two calls) are blanked before comparing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway

MODEL = "fake-model"
ALIAS = "pub"  # the gateway's name for the fake's MODEL
pytestmark = pytest.mark.fake_upstream(tokens=5)
PROFILES = [{"name": "plain", "model": MODEL, "memory": "off", "extract": False,
             "citations": "none", "system_prompt": "Be brief."}]  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[Gateway]:
    upstreams = [
        {"name": "f", "base_url": fake.base_url, "models": [MODEL], "aliases": {ALIAS: MODEL}},
        {"name": "nu", "base_url": fake.base_url, "models": ["nu"], "aliases": {"nu": MODEL},
         "stream_usage": False},
    ]  # fmt: skip
    config = {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": upstreams,
        "assistants": PROFILES,
    }
    with run_gateway(tmp_path_factory.mktemp("relaybytes"), config) as gw:
        yield gw


def post(url: str, body: dict[str, Any]) -> bytes:
    with httpx.Client(trust_env=False, timeout=60) as client:
        response = client.post(url, json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.content


def blank(raw: bytes) -> bytes:
    """The chunk id and ``created`` blanked: they differ between two calls."""
    raw = re.sub(rb'"id":"chatcmpl-fake-\d+"', b'"id":"ID"', raw)
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def body_of(model: str, **extra: Any) -> dict[str, Any]:
    message = {"role": "user", "content": "say something short"}
    return {"model": model, "stream": True, "messages": [message], **extra}


def direct(fake: FakeUpstream, usage: bool, **extra: Any) -> bytes:
    """The stream as the fake sends it to the gateway."""
    options = {"stream_options": {"include_usage": True}} if usage else {}
    return blank(post(fake.base_url + "/chat/completions", body_of(MODEL, **(extra | options))))


def via(gateway: Gateway, model: str, **extra: Any) -> bytes:
    return blank(post(gateway.v1 + "/chat/completions", body_of(model, **extra)))


def without_usage(raw: bytes) -> bytes:
    events = raw.split(b"\n\n")
    kept = [event for event in events if b'"usage":' not in event]
    assert len(kept) == len(events) - 1, raw  # exactly one usage-only event went
    return b"\n\n".join(kept)


def renamed(raw: bytes, public: str) -> bytes:
    found = raw.count(b'"model":"fake-model"')
    assert found >= 3, raw
    return raw.replace(b'"model":"fake-model"', b'"model":"' + public.encode() + b'"')


def test_usage_not_asked_for_is_removed_and_the_rest_is_untouched(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    expected = without_usage(direct(fake, usage=True))
    assert expected.endswith(b"data: [DONE]\n\n")
    assert via(gateway, MODEL) == expected


def test_usage_asked_for_is_kept(gateway: Gateway, upstream: str, fake: FakeUpstream) -> None:
    usage = {"stream_options": {"include_usage": True}}
    expected = direct(fake, usage=True)
    assert b'"usage":{' in expected
    assert via(gateway, MODEL, **usage) == expected


def test_an_alias_renames_the_model_in_every_event(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    expected = renamed(without_usage(direct(fake, usage=True)), ALIAS)
    assert via(gateway, ALIAS) == expected
    usage = {"stream_options": {"include_usage": True}}
    assert via(gateway, ALIAS, **usage) == renamed(direct(fake, usage=True), ALIAS)


def test_a_member_asked_for_no_usage_relays_what_it_sends(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    expected = renamed(direct(fake, usage=False), "nu")
    assert via(gateway, "nu") == expected


def test_events_that_need_no_change_pass_through_with_their_bytes(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    """Unicode, escapes and other fields (here ``stop`` text and a longer answer) reach
    the client exactly as the upstream wrote them."""
    extra = {"max_tokens": 40, "stream_options": {"include_usage": True}}
    fake.configure(replies=[{"content": 'héllo "wörld" 你好\\n\ttab ✓'}])
    expected = direct(fake, usage=False, **extra)
    fake.configure(replies=[{"content": 'héllo "wörld" 你好\\n\ttab ✓'}])
    got = via(gateway, MODEL, **extra)
    assert "你好".encode() in got
    assert got == expected


def test_an_error_mid_stream_reaches_the_client_then_the_gateways_error(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    fake.configure(script="error:2")
    upstream_part = direct(fake, usage=True)
    assert upstream_part.count(b"\n\n") == 4  # role, two pieces, the error event
    fake.configure(script="error:2")
    got = via(gateway, MODEL)
    tail = (
        b'data: {"error":{"message":"upstream f ended the stream without [DONE]",'
        b'"type":"upstream_error","param":null,"code":null}}\n\n'
    )
    assert got == upstream_part + tail


def test_an_assistant_stream_differs_only_in_its_model_and_conversation(
    gateway: Gateway, upstream: str, fake: FakeUpstream
) -> None:
    got = via(gateway, "assistant/plain")
    sent = fake.requests()[-1]  # the prompt the assistant built
    expected = renamed(without_usage(direct(fake, usage=True, messages=sent["messages"])),
                       "assistant/plain")  # fmt: skip
    conversation = re.search(rb',"conversation_id":"[0-9a-f]{32}"\}\n\ndata: \[DONE\]', got)
    assert conversation is not None, got
    finish = b'"finish_reason":"stop"}]'
    assert expected.count(finish) == 1
    cid = conversation.group(0).split(b"}")[0]  # ,"conversation_id":"..."
    assert got == expected.replace(finish, finish + cid)
