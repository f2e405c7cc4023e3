"""The call record of the request being served (set up by the access-log middleware)."""

from __future__ import annotations

from starlette.requests import Request

from enclave.router import CallRecord


def call_record(request: Request) -> CallRecord:
    record: CallRecord | None = getattr(request.state, "call", None)
    if record is None:
        record = request.state.call = CallRecord()
    return record
