"""The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from enclave.protocol._base import Closed


class ErrorBody(Closed):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(Closed):
    error: ErrorBody
