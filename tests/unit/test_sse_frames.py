"""sse.Frames: the events a relay passes on as bytes are exactly those the decoder and
the encoder would have written, however the upstream's bytes are cut."""

from __future__ import annotations

import pytest

from enclave import sse

STREAMS = [
    b'data: {"a":1}\n\ndata: {"b":"\xc3\xa9"}\n\ndata: [DONE]\n\n',
    b'data:{"no":"space"}\n\ndata: two\ndata: lines\n\n: a comment\n\ndata: [DONE]\n\n',
    b"event: x\nid: 7\ndata: named\n\n\n\ndata: after blank lines\n\ndata: \n\n",
    b"data: crlf\r\n\r\ndata: more\r\n\r\ndata: [DONE]\r\n\r\n",
    b"data: one\n\ndata: then cr\r\rdata: last\n\n",
    b"data: no final blank line",
    b"data: ends with half\n",
]


def old(raw: bytes) -> bytes:
    """What the relay wrote before: every event decoded, then encoded."""
    return b"".join(sse.encode(event.data) for event in sse.decode([raw]))


def new(pieces: list[bytes]) -> bytes:
    frames = sse.Frames()
    items = [item for piece in pieces for item in frames.feed(piece)] + frames.flush()
    return b"".join(i if isinstance(i, bytes) else sse.encode(i.data) for i in items)


@pytest.mark.parametrize("raw", STREAMS)
def test_every_cut_gives_the_decoders_bytes(raw: bytes) -> None:
    expected = old(raw)
    assert new([raw]) == expected
    for cut in range(1, len(raw)):
        assert new([raw[:cut], raw[cut:]]) == expected, cut
    assert new([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_canonical_events_come_back_as_their_own_bytes() -> None:
    frames = sse.Frames()
    raw = b'data: {"x":"y"}\n\ndata: [DONE]\n\n'
    assert frames.feed(raw[:5]) == []
    assert frames.feed(raw[5:]) == [b'data: {"x":"y"}\n\n', sse.DONE]
    assert frames.flush() == []
    assert frames.ended
