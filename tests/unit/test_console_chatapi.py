"""The pieces of plain-model conversations (issue 14) that need no server: the question
stored for a user message with images, the answer collected from relayed events, the
listing cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.requests import Request

from enclave import sse
from enclave.assistants.conversations import _decode_cursor, _encode_cursor
from enclave.auth.network import Allowlist
from enclave.errors import InvalidRequest
from enclave.gateway import session_cookie
from enclave.gateway.chat.keep import Keeper, meta, question_of
from enclave.router import CallRecord
from enclave.store.models_assistants import Conversation

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_the_question_is_the_last_user_text_with_a_note_of_its_images() -> None:
    messages: list[Any] = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": [{"type": "text", "text": "What is in these?"}, IMAGE, IMAGE]},
    ]
    assert question_of(messages) == "What is in these?\n\n[2 images]"
    assert question_of([{"role": "user", "content": [IMAGE]}]) == "[1 image]"
    assert question_of([{"role": "system", "content": "s"}]) == ""


def keeper() -> Keeper:
    where = ("bob", "c", "bob")
    return Keeper(None, where, "m", "q", record=CallRecord(), started=0.0)  # type: ignore[arg-type]


def test_the_answer_is_collected_from_choice_zero_content_deltas_only() -> None:
    kept = keeper()
    events = [
        sse.encode('{"choices":[{"index":0,"delta":{"role":"assistant"}}]}'),
        sse.encode('{"choices":[{"index":0,"delta":{"content":"Hel"}}]}'),
        sse.encode('{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}'),
        sse.encode('{"choices":[],"usage":{"prompt_tokens":1}}'),
        sse.encode('{"error":{"message":"x"}}'),
        sse.encode("not json"),
        sse.DONE,
    ]
    for raw in events:
        kept.collect(raw)
    assert "".join(kept.answer) == "Hello"
    kept.finish_response({"choices": [{"message": {"content": "Whole"}}]})
    assert kept.answer == ["Whole"]


def test_meta_comes_from_the_call_record() -> None:
    record = CallRecord(member="gpu-1", ttft_s=0.25, prompt_tokens=7, completion_tokens=3)
    about = meta(record, "qwen", 0.0)
    assert {k: about[k] for k in ("model", "upstream", "tokens_in", "tokens_out", "ttft_ms")} == {
        "model": "qwen", "upstream": "gpu-1", "tokens_in": 7, "tokens_out": 3, "ttft_ms": 250.0
    }  # fmt: skip
    assert about["latency_ms"] > 0


def test_a_cursor_round_trips_and_a_forged_one_is_a_400_naming_it() -> None:
    at = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)
    row = Conversation(id=42, updated_at=at)
    assert _decode_cursor(_encode_cursor(row)) == (at, 42)
    for bad in ("", "!!!", "bm9wZQ", "MjAyNi0xMi0wNnwx", "eHx5"):  # nope, naive time, x|y
        with pytest.raises(InvalidRequest) as caught:
            _decode_cursor(bad)
        assert caught.value.param == "cursor"


def request(scheme: str, peer: str, proto: str | None) -> Request:
    headers = [(b"x-forwarded-proto", proto.encode())] if proto else []
    return Request({"type": "http", "scheme": scheme, "client": (peer, 5000), "headers": headers,
                    "method": "POST", "path": "/api/auth/login", "server": ("g", 80)})  # fmt: skip


def test_the_cookie_is_secure_over_tls_or_when_a_trusted_proxy_says_https() -> None:
    proxies = Allowlist(["10.0.0.0/8"])
    assert session_cookie.https(request("https", "192.0.2.1", None), proxies)
    assert session_cookie.https(request("http", "10.1.2.3", "https"), proxies)
    assert session_cookie.https(request("http", "10.1.2.3", "http, https"), proxies)
    assert not session_cookie.https(request("http", "10.1.2.3", "http"), proxies)
    assert not session_cookie.https(request("http", "192.0.2.1", "https"), proxies)  # untrusted
