"""The one Server-Sent Events encoder and decoder, shared by gateway, ask and bench.

Only what the OpenAI streaming protocol and the task runs' streams use: ``data:`` lines
(several join with ``\\n``), an optional ``event:`` name and ``id:``, comments (``:``
lines) ignored, events separated by a blank line, ``\\n``, ``\\r\\n`` or ``\\r`` line ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DONE_DATA = "[DONE]"
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str | None = None
    id: str | None = None  # the last ``id:`` seen (what a client resumes from)

    @property
    def is_done(self) -> bool:
        return self.data == DONE_DATA

    def json(self) -> Any:
        return json.loads(self.data)


def encode(data: str | bytes, event: str | None = None, id: int | str | None = None) -> bytes:
    """One event. Multi-line data becomes several ``data:`` lines."""
    raw = data.encode() if isinstance(data, str) else data
    head = f"id: {id}\n".encode() if id is not None else b""
    head += f"event: {event}\n".encode() if event else b""
    if b"\n" in raw or b"\r" in raw:
        lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
    return head + b"data: " + raw + b"\n\n"


def encode_json(obj: Any) -> bytes:
    return encode(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, get whole events back."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            line, sep, rest = self._next_line(self._buffer)
            if not sep:
                return events
            self._buffer = rest
            event = self._line(line.decode("utf-8"))
            if event is not None:
                events.append(event)

    def flush(self) -> list[Event]:
        """Whatever is pending when the stream ends without a final blank line."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(Event("\n".join(self._data), self._event, self._id))
            self._data, self._event = [], None
        return events

    @staticmethod
    def _next_line(buffer: bytes) -> tuple[bytes, bytes, bytes]:
        cut = -1
        for sep in (b"\n", b"\r"):
            at = buffer.find(sep)
            if at != -1 and (cut == -1 or at < cut):
                cut = at
        if cut == -1:
            return buffer, b"", b""
        # A lone '\r' at the very end may be the first half of '\r\n'.
        if buffer[cut : cut + 1] == b"\r":
            if cut + 1 == len(buffer):
                return buffer, b"", b""
            if buffer[cut + 1 : cut + 2] == b"\n":
                return buffer[:cut], b"\r\n", buffer[cut + 2 :]
        return buffer[:cut], buffer[cut : cut + 1], buffer[cut + 1 :]

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data:
                self._event = None
                return None
            event = Event("\n".join(self._data), self._event, self._id)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class Frames:
    """Split a stream into events, keeping the bytes of each event already written the
    way :func:`encode` writes it (``data: X`` on one line, then a blank line, ``\\n``
    line ends): a relay passes those on untouched. Any other event (comments, ``event:``,
    several ``data:`` lines, ``\\r`` line ends) comes back decoded, as an :class:`Event`,
    and a stream that uses ``\\r`` is decoded from then on.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._decoder: Decoder | None = None  # once the stream used ``\\r``
        self.ended = False  # the upstream's bytes have all been split

    def feed(self, chunk: bytes) -> list[bytes | Event]:
        """The whole events in ``chunk`` and what came before it: each is the event's
        bytes (``data: X\\n\\n``) where they are as :func:`encode` writes them, else the
        decoded :class:`Event`."""
        if self._decoder is None and b"\r" in chunk:
            self._decoder = Decoder()
            chunk, self._buffer = self._buffer + chunk, b""
        if self._decoder is not None:
            return list(self._decoder.feed(chunk))
        buffer = self._buffer + chunk if self._buffer else chunk
        *whole, self._buffer = buffer.split(b"\n\n")
        out: list[bytes | Event] = []
        for frame in whole:
            if frame.startswith(b"data: ") and b"\n" not in frame:
                out.append(frame + b"\n\n")
            elif frame:
                out.extend(Decoder().feed(frame + b"\n\n"))
        return out

    def flush(self) -> list[bytes | Event]:
        """Whatever is pending once the stream has ended (it may lack the blank line)."""
        self.ended = True
        decoder = self._decoder or Decoder()
        events = decoder.feed(self._buffer)
        self._buffer = b""
        return [*events, *decoder.flush()]


def decode(chunks: Iterable[bytes]) -> Iterator[Event]:
    decoder = Decoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


async def adecode(chunks: AsyncIterable[bytes]) -> AsyncIterator[Event]:
    decoder = Decoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
