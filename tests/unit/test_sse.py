"""The one SSE encoder/decoder: round trips, every split point, line-end variants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from enclave.sse import DONE, Decoder, Event, adecode, decode, encode, encode_json

STREAM = (
    encode_json({"choices": [{"delta": {"content": "你好"}}]})
    + encode("line one\nline two")
    + b": keep-alive comment\n\n"
    + encode("named", event="ping")
    + encode_json({"error": {"message": "boom"}})
    + DONE
)
EXPECTED = [
    Event('{"choices":[{"delta":{"content":"你好"}}]}'),
    Event("line one\nline two"),
    Event("named", "ping"),
    Event('{"error":{"message":"boom"}}'),
    Event("[DONE]"),
]


def feed_all(chunks: list[bytes]) -> list[Event]:
    decoder = Decoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


def test_encode_single_line() -> None:
    assert encode("hi") == b"data: hi\n\n"
    assert encode(b"hi", event="x") == b"event: x\ndata: hi\n\n"


def test_encode_multi_line_normalises_line_ends() -> None:
    assert encode("a\r\nb\rc\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_encode_json_is_compact_and_keeps_unicode() -> None:
    assert encode_json({"a": "é", "b": [1, 2]}) == 'data: {"a":"é","b":[1,2]}\n\n'.encode()


def test_round_trip_whole() -> None:
    assert feed_all([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_round_trip_split_at_every_byte(cut: int) -> None:
    assert feed_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_round_trip_one_byte_at_a_time() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_line_end_variants(newline: bytes) -> None:
    raw = STREAM.replace(b"\n", newline)
    assert feed_all([raw]) == EXPECTED
    assert feed_all([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [Event("a")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    raw = b": hello\nid: 7\nretry: 10\ndata: x\n\n:only a comment\n\n"
    assert feed_all([raw]) == [Event("x", id="7")]  # the id is kept (task run streams resume)


def test_data_without_space_and_empty_data() -> None:
    assert feed_all([b"data:x\n\ndata:\n\n"]) == [Event("x"), Event("")]


def test_event_name_does_not_leak_into_next_event() -> None:
    raw = b"event: a\n\ndata: x\n\nevent: b\ndata: y\n\n"
    assert feed_all([raw]) == [Event("x"), Event("y", "b")]


def test_flush_without_final_blank_line() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: one\n\ndata: two") == [Event("one")]
    assert decoder.flush() == [Event("two")]
    assert decoder.flush() == []


def test_flush_with_pending_line_and_no_data() -> None:
    decoder = Decoder()
    assert decoder.feed(b": comment only") == []
    assert decoder.flush() == []


def test_event_helpers() -> None:
    assert Event("[DONE]").is_done
    assert not Event("{}").is_done
    assert Event('{"a": 1}').json() == {"a": 1}


def test_decode_iterable() -> None:
    assert list(decode(STREAM[i : i + 7] for i in range(0, len(STREAM), 7))) == EXPECTED


def test_adecode_async_iterable() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 5):
            yield STREAM[i : i + 5]

    async def collect() -> list[Event]:
        return [event async for event in adecode(chunks())]

    assert asyncio.run(collect()) == EXPECTED
