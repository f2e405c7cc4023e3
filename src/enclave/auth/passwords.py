"""Passwords of web-console users: argon2id (argon2-cffi's defaults, RFC 9106 low-memory).

Only hashes are stored. :func:`verify_password` never raises on a wrong password or a
damaged hash; it answers ``False``.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from enclave.errors import InvalidRequest

MIN_LENGTH = 8
MAX_LENGTH = 1024  # characters; longer ones would make hashing a denial-of-service lever


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id


def check_password(password: str) -> None:
    """Raise :class:`InvalidRequest` (param ``password``) unless the length is acceptable."""
    if not password:
        raise InvalidRequest("the password is empty", param="password")
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(
            f"the password is too short: at least {MIN_LENGTH} characters", param="password"
        )
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(
            f"the password is too long: at most {MAX_LENGTH} characters", param="password"
        )


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) of an acceptable password."""
    check_password(password)
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``False`` for a mismatch, a bad hash or a bad length.

    With ``password_hash=None`` (no such user) a hash is still checked, so that an
    unknown name takes as long as a wrong password.
    """
    if password_hash is None:
        _verify(_dummy_hash(), "x" * MIN_LENGTH)
        return False
    if not password or len(password) > MAX_LENGTH:
        return False
    return _verify(password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (re-hash at login)."""
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher().hash("not a real password")
