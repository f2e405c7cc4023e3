"""The one line ``ask`` prints for an :class:`~enclave.errors.AskError` (its exit code is
the error's ``exit_code``)."""

from __future__ import annotations

from enclave.errors import AskError, AuthRefused, StatusError, Unreachable


def explain(exc: AskError, url: str) -> str:
    """What went wrong, in words for the person at the terminal; ``url`` is the
    gateway ``ask`` was told to use."""
    if isinstance(exc, Unreachable):
        return f"cannot reach enclave at {url.rstrip('/')} — is `enclave serve` running?"
    if isinstance(exc, AuthRefused):
        return "the API key was refused"
    if isinstance(exc, StatusError):
        return f"{exc.status}: {exc.message}"
    return exc.message
