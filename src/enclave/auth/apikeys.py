"""API keys: ``sk-enc-<prefix>-<secret>``, stored as a SHA-256 hash of the whole key.

The prefix (8 characters of lowercase base32) is shown in lists and logs and finds the
key's record; the secret (32 URL-safe characters, 192 random bits) is shown once, at
creation. Keys are high-entropy, so a fast hash is right for them (argon2 is for
passwords, which are not).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase

from enclave.durations import parse_duration
from enclave.errors import InvalidRequest

KEY_START = "sk-enc-"
_KEY = re.compile(r"sk-enc-([a-z2-7]{8})-([A-Za-z0-9_-]{32})")
_PREFIX = re.compile(r"[a-z2-7]{8}")


@dataclass(frozen=True)
class NewKey:
    key: str  # the whole key: give it to its owner once, never store it
    prefix: str
    secret_hash: str  # what is stored: hash_key(key)


def new_key() -> NewKey:
    prefix = base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()
    key = f"{KEY_START}{prefix}-{secrets.token_urlsafe(24)}"
    return NewKey(key=key, prefix=prefix, secret_hash=hash_key(key))


def hash_key(key: str) -> str:
    """SHA-256 hex of the whole key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def prefix_of(key: str) -> str | None:
    """The prefix of a well-formed key; ``None`` for anything else (a JWT, garbage)."""
    found = _KEY.fullmatch(key)
    return found.group(1) if found else None


def is_prefix(text: str) -> bool:
    """Whether ``text`` has the form of a key's prefix (8 lowercase base32 characters)."""
    return _PREFIX.fullmatch(text) is not None


def label(prefix: str) -> str:
    """How a key is named to people: ``sk-enc-abcd1234`` (never the secret)."""
    return f"{KEY_START}{prefix}"


def matches(secret_hash: str, key: str) -> bool:
    """Whether ``key`` is the key stored as ``secret_hash`` (constant-time comparison)."""
    return hmac.compare_digest(secret_hash.encode("ascii", "replace"), hash_key(key).encode())


def model_allowed(patterns: list[str] | tuple[str, ...], model: str) -> bool:
    """Whether a key restricted to these glob patterns may use ``model``; ``[]`` allows all."""
    return not patterns or any(fnmatchcase(model, pattern) for pattern in patterns)


def parse_expiry(text: str, *, param: str | None = "expires") -> timedelta | None:
    """A key's lifetime: ``"30d"``, ``"12h"``, ``"90m"`` → a timedelta; ``"never"`` → ``None``."""
    if text.strip().lower() == "never":
        return None
    try:
        return parse_duration(text, units="dhm", bare=False, whole=True)
    except ValueError:
        raise InvalidRequest(
            f"invalid duration {text!r}: use a positive whole number of days, hours or "
            "minutes (30d, 12h, 90m) or 'never'",
            param=param,
        ) from None
