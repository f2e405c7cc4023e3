"""The streamed side of :mod:`.toolcalls`: a relayed stream whose content is a tool call
written as a JSON block becomes a stream of OpenAI ``tool_calls`` deltas.

Content is held back only while it could still be such a block: from a fence or a
``<tool_call>`` tag until the block closes, and an answer that begins with ``{`` or ``[``
to its end. A held block that is a call naming an offered tool is sent as one
``tool_calls`` delta per call before the finish chunk (its ``finish_reason`` then
``tool_calls``); anything else is released unchanged. A stream in which the engine already
sent ``tool_calls`` passes through as it is.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from enclave.gateway.chat.toolcalls import CLOSERS, OPENERS, ToolCall, parse_calls


class ToolStream:
    """One stream's reader: :meth:`feed` each event's data, :meth:`end` before ``[DONE]``."""

    __slots__ = ("bare", "block", "calls", "ended", "names", "passthrough", "pending",
                 "released", "skeleton")  # fmt: skip

    def __init__(self, names: Collection[str]) -> None:
        self.names = names
        self.pending = ""  # content not yet released
        self.block: str | None = None  # the opener of the block being held
        self.bare = False  # the answer began with { or [: held to its end
        self.released = False  # some non-blank content went out
        self.calls: list[ToolCall] = []
        self.passthrough = False  # the engine sent tool_calls itself
        self.ended = False
        self.skeleton: dict[str, Any] = {}  # id, object, created, model of the stream

    def feed(self, data: str) -> list[str]:
        """The events to send for one relayed event."""
        if self.passthrough or self.ended:
            return [data]
        chunk = _chunk(data)
        choice = _first_choice(chunk)
        if chunk is None or choice is None:
            return [data]
        self.skeleton = {k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk}
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("tool_calls"):
            self.passthrough = True
            return [*self._flush_text(), data]
        out: list[str] = []
        content = delta.get("content")
        if isinstance(content, str) and content:
            text = self._take(content)
            others = {k for k, v in delta.items() if k != "content" and v is not None}
            if text or others:
                delta["content"] = text or None
                out.append(_dump({**chunk, "choices": [{**choice, "delta": delta,
                                                        "finish_reason": None}]}))  # fmt: skip
        elif choice.get("finish_reason") is None:
            return [data]
        if choice.get("finish_reason") is not None:
            out += self._finish(chunk, choice)
        return out

    def end(self) -> list[str]:
        """What is still held when the stream ends without a finish chunk."""
        if self.passthrough or self.ended:
            return []
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        return self._finish({**self.skeleton, "choices": [finish]}, finish)

    # ---------------------------------------------------------------- the content

    def _take(self, piece: str) -> str:
        """Add a content piece; return the text that can go out now."""
        self.pending += piece
        out = ""
        while True:
            if self.bare:
                return out
            if self.block is not None:
                if not self._close_block():
                    return out
                out += self._released_block()
                continue
            if not self.released and self.pending.lstrip()[:1] in ("{", "["):
                self.bare = True
                continue
            start = _opener_at(self.pending)
            if start is None:
                keep = _partial_opener(self.pending)
                cut = len(self.pending) - keep
                out += self._release(cut)
                return out
            out += self._release(start)
            self.block = next(o for o in OPENERS if self.pending.startswith(o))

    def _release(self, cut: int) -> str:
        text, self.pending = self.pending[:cut], self.pending[cut:]
        if text.strip():
            self.released = True
        return text

    def _close_block(self) -> bool:
        assert self.block is not None
        closer = CLOSERS[self.block]
        return self.pending.find(closer, len(self.block)) >= 0

    def _released_block(self) -> str:
        """The closed block: its calls kept, or its text to release."""
        assert self.block is not None
        closer = CLOSERS[self.block]
        end = self.pending.find(closer, len(self.block)) + len(closer)
        block, self.pending, self.block = self.pending[:end], self.pending[end:], None
        calls = parse_calls(block, self.names)
        if calls:
            self.calls += calls
            return ""
        self.released = True
        return block

    def _held(self) -> str:
        """At the end: the held text (calls kept), nothing held any more."""
        text, self.pending, self.block, self.bare = self.pending, "", None, False
        calls = parse_calls(text, self.names) if text.strip() else None
        if calls:
            self.calls += calls
            return ""
        return text

    def _flush_text(self) -> list[str]:
        text = self._held()
        return [self._delta({"content": text})] if text else []

    def _finish(self, chunk: dict[str, Any], choice: dict[str, Any]) -> list[str]:
        self.ended = True
        out = self._flush_text()
        for index, call in enumerate(self.calls):
            out.append(self._delta({"tool_calls": [{"index": index, **call}]}))
        reason = "tool_calls" if self.calls else choice.get("finish_reason")
        out.append(_dump({**chunk, "choices": [{**choice, "delta": {}, "finish_reason": reason}]}))
        return out

    def _delta(self, delta: dict[str, Any]) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        return _dump({**self.skeleton, "choices": [choice]})


def _chunk(data: str) -> dict[str, Any] | None:
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    return chunk if isinstance(chunk, dict) else None


def _first_choice(chunk: dict[str, Any] | None) -> dict[str, Any] | None:
    choices = chunk.get("choices") if chunk else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    return choices[0] if choices[0].get("index", 0) == 0 else None


def _opener_at(text: str) -> int | None:
    found = [i for i in (text.find(o) for o in OPENERS) if i >= 0]
    return min(found) if found else None


def _partial_opener(text: str) -> int:
    """How many characters at the end of ``text`` could begin an opener."""
    for size in range(min(len(text), max(map(len, OPENERS)) - 1), 0, -1):
        if any(o.startswith(text[-size:]) for o in OPENERS):
            return size
    return 0


def _dump(chunk: dict[str, Any]) -> str:
    return json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
