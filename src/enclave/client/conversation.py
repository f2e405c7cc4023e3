"""A REPL conversation as data: its turns, what is staged for the next question, and the
pure helpers on them (the prompt, a token estimate, trimming to the model's window, the
Markdown transcript of ``:save``). No I/O here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

IMAGE_TOKENS = 1200  # a rough cost of one downscaled image in a vision model's context
MESSAGE_TOKENS = 4  # role and separators


@dataclass
class Attachment:
    label: str  # the path or "clipboard"
    text: str | None = None  # a text file (fenced into the question)
    image_url: str | None = None  # a data: URL


@dataclass
class Conversation:
    messages: list[dict[str, Any]] = field(default_factory=list)  # user/assistant turns
    staged: list[Attachment] = field(default_factory=list)
    id: int | None = None  # in the history store
    window: int | None = None  # the model's context length in tokens, once known
    models: list[str] | None = None  # the server's models, once asked


def prompt_text(staged: list[Attachment]) -> str:
    """``User > ``, or ``User (1 image, 2 files) > `` while something is staged."""
    images = sum(1 for item in staged if item.image_url is not None)
    files = len(staged) - images
    parts = [
        f"{n} {word}{'s' if n > 1 else ''}" for n, word in ((images, "image"), (files, "file")) if n
    ]
    return f"User ({', '.join(parts)}) > " if parts else "User > "


def estimate_tokens(message: dict[str, Any]) -> int:
    """A cautious guess without a tokenizer: ~4 ASCII characters a token, one token per
    other character (CJK), :data:`IMAGE_TOKENS` an image."""
    content = message.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    total = MESSAGE_TOKENS
    for part in parts:
        if part.get("type") == "image_url":
            total += IMAGE_TOKENS
        else:
            text = str(part.get("text") or "")
            ascii_chars = sum(1 for char in text if ord(char) < 128)
            total += ascii_chars // 4 + (len(text) - ascii_chars) + 1
    return total


def fit(
    history: list[dict[str, Any]], question: dict[str, Any], budget: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest earlier turns that fit in ``budget`` tokens with the question, and how
    many were left out. Kept turns start with a user turn."""
    used = estimate_tokens(question)
    start = len(history)
    while start > 0 and used + estimate_tokens(history[start - 1]) <= budget:
        start -= 1
        used += estimate_tokens(history[start])
    while start < len(history) and history[start]["role"] != "user":
        start += 1
    return history[start:], start


def transcript_markdown(messages: list[dict[str, Any]], model: str) -> str:
    """The conversation as a Markdown document (``:save``)."""
    lines = [f"# ask — {model}, {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for message in messages:
        content = message["content"]
        text, images = content, 0
        if isinstance(content, list):
            text = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
            images = sum(1 for p in content if p.get("type") == "image_url")
        who = "User" if message["role"] == "user" else "Assistant"
        note = f" ({images} image{'s' if images > 1 else ''})" if images else ""
        lines += [f"## {who}{note}", "", str(text).rstrip("\n"), ""]
    return "\n".join(lines)
