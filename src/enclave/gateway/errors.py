"""Every error a client sees goes through here: the OpenAI envelope with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from enclave.errors import ClientGone, EnclaveError, InvalidRequest
from enclave.protocol import ErrorBody, ErrorEnvelope

log = logging.getLogger("enclave.gateway")


def envelope(exc: EnclaveError) -> dict[str, Any]:
    body = ErrorBody(message=exc.message, type=exc.type, param=exc.param, code=exc.code)
    return ErrorEnvelope(error=body).model_dump()


def error_response(exc: EnclaveError) -> JSONResponse:
    return JSONResponse(envelope(exc), status_code=exc.status, headers=exc.headers())


def _loc(parts: tuple[int | str, ...]) -> str:
    """``('messages', 0, 'content')`` → ``messages[0].content``, union branch tags dropped."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and not part[:1].isupper() and part not in _TYPE_TAGS:
            out += f".{part}" if out else part
    return out


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def invalid_from_validation(exc: ValidationError | RequestValidationError) -> InvalidRequest:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = _loc(tuple(first.get("loc", ())))
    where = where.removeprefix("body.").removeprefix("body")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    text = f"invalid request: '{where}': {message}" if where else f"invalid request: {message}"
    return InvalidRequest(text, param=where or None)


def install(app: FastAPI) -> None:
    async def on_enclave(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EnclaveError)
        if isinstance(exc, ClientGone):
            return Response(status_code=exc.status)  # nobody reads it: the log and metrics do
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return error_response(invalid_from_validation(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        error = EnclaveError(str(exc.detail))
        error.status, error.type = exc.status_code, _http_type(exc.status_code)
        return error_response(error)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client left while sending its body: the access log's 499 says so, no traceback.
        record = getattr(request.state, "call", None)
        if record is not None and record.outcome is None:
            record.outcome = "client_disconnected"
        return Response(status_code=ClientGone.status)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(EnclaveError("internal error; see the gateway log"))

    app.add_exception_handler(EnclaveError, on_enclave)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)


def _http_type(status: int) -> str:
    return "not_found_error" if status == 404 else "invalid_request_error"
