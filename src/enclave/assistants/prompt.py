"""Prompt assembly for a virtual-model call: pure functions, no I/O.

What the base model receives is one system message, then the conversation::

    {profile.system_prompt}
    {the client's own system messages, if any}

    ## What you know about this user
    - {long-term memory}, one per line

    ## Recent exchanges with this user in other conversations
    User: ... / Assistant: ...

    ## Knowledge
    {how to use and cite the sources}
    [1] {document} § {heading}
    {chunk text}

then the stored history (when the client sent only its new message) and the client's
messages. Empty sections are left out. Citations go back to the client as a
``citations`` list, and with the ``markers`` style also as a ``Sources:`` line appended
to the answer, so a client that shows only the text still shows where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CITE_MARKERS = (
    "Answer from the sources below when they are relevant, and cite each one you use as "
    "[1], [2], … right after the sentence it supports. If they do not hold the answer, "
    "say so rather than guess."
)
MARKER = re.compile(r"\[(\d+(?:\s*[,，]\s*\d+)*)\]")  # [1], [1, 3], [1，3]
CITE_FIELD = (
    "Answer from the sources below when they are relevant. If they do not hold the answer, "
    "say so rather than guess."
)


@dataclass(frozen=True)
class Source:
    """One retrieved chunk as the prompt and the citation list show it."""

    index: int  # 1-based, the [n] of a marker
    kb: str
    document: str
    heading: str
    source: str
    text: str
    score: float

    @property
    def label(self) -> str:
        return f"{self.document} § {self.heading}" if self.heading else self.document

    def citation(self) -> dict[str, Any]:
        return {
            "index": self.index, "kb": self.kb, "document": self.document,
            "heading": self.heading, "source": self.source, "score": round(self.score, 4),
        }  # fmt: skip


def text_of(message: dict[str, Any]) -> str:
    """The text parts of a message's content (images left out)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def system_prompt(
    base: str,
    client_system: Sequence[str],
    *,
    memories: Sequence[str],
    recent: Sequence[tuple[str, str]],
    sources: Sequence[Source],
    citations: str,
) -> str:
    parts = [base.strip(), *(text.strip() for text in client_system if text.strip())]
    if memories:
        parts.append("## What you know about this user\n" + "\n".join(f"- {m}" for m in memories))
    if recent:
        lines = [f"{'User' if role == 'user' else 'Assistant'}: {text}" for role, text in recent]
        parts.append(
            "## Recent exchanges with this user in other conversations\n" + "\n".join(lines)
        )
    if sources:
        rule = CITE_MARKERS if citations == "markers" else CITE_FIELD
        blocks = [f"[{s.index}] {s.label}\n{s.text.strip()}" for s in sources]
        parts.append("## Knowledge\n" + rule + "\n\n" + "\n\n".join(blocks))
    return "\n\n".join(part for part in parts if part)


def assemble(
    system: str, history: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The messages sent on: our system message, stored history, the client's messages
    without their system messages (folded into ours)."""
    own = [dict(m) for m in messages if m.get("role") not in ("system", "developer")]
    return [{"role": "system", "content": system}, *history, *own]


def sources_footer(sources: Sequence[Source], answer: str = "") -> str:
    """``\\n\\nSources: [1] faq.md § Returns; [2] …`` (the ``markers`` style).

    When the answer cites sources by marker (``[2]``, ``[1, 3]``), only those are listed;
    when it cites none, every source it was given is, as it may have used any of them.
    """
    cited = {int(n) for group in MARKER.findall(answer) for n in re.findall(r"\d+", group)}
    shown = [s for s in sources if s.index in cited] or list(sources)
    if not shown:
        return ""
    return "\n\nSources: " + "; ".join(f"[{s.index}] {s.label}" for s in shown)
