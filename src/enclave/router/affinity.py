"""The affinity key of a request: which conversation or prompt prefix it continues."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CONVERSATION_HEADER = "x-enclave-conversation"
PREFIX_CHARS = 4096  # enough to cover a system prompt and the first turn


def affinity_key(mode: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    if mode == "conversation":
        return conversation_id(body, headers)
    if mode == "prefix":
        return prefix_hash(body.get("messages"))
    return None


def conversation_id(body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    given = headers.get(CONVERSATION_HEADER)
    if given:
        return "c:" + given
    metadata = body.get("metadata")
    given_id = metadata.get("conversation_id") if isinstance(metadata, dict) else None
    if isinstance(given_id, str) and given_id:
        return "c:" + given_id
    user = body.get("user")
    return "u:" + user if isinstance(user, str) and user else None


def prefix_hash(messages: object) -> str | None:
    """A hash of the conversation's start: requests sharing it share vLLM's prefix cache."""
    if not isinstance(messages, list) or not messages:
        return None
    text = json.dumps(messages[:2], ensure_ascii=False, sort_keys=True)[:PREFIX_CHARS]
    return "p:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
