"""Read a request body (raw, or a JSON object) within the configured size limit.

A JSON body is refused (400) before any model sees it when it nests deeper than
``limits.max_json_depth`` or holds a lone UTF-16 surrogate (``"\\ud800"``): Python's
parser accepts both, and they would fail later, as a 500, when recursed into or encoded
as UTF-8 (database, upstream, logs).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from enclave.errors import InvalidRequest, PayloadTooLarge
from enclave.gateway.errors import invalid_from_validation

Model = TypeVar("Model", bound=BaseModel)

DEFAULT_JSON_DEPTH = 64  # when the app has no settings (limits.max_json_depth)
# A surrogate written as an escape: the only way one reaches a parsed string (raw
# surrogate bytes are invalid UTF-8, refused by the parser already).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTAINERS = frozenset({dict, list})  # what json.loads makes of arrays and objects


def _too_large(limit: int, what: str, setting: str) -> PayloadTooLarge:
    size = f"{limit / 2**20:.1f} MiB" if limit >= 2**20 else f"{limit / 2**10:.0f} KiB"
    return PayloadTooLarge(f"{what} is larger than {size} ({setting})")


async def read_body(
    request: Request,
    limit: int,
    what: str = "request body",
    setting: str = "limits.max_body_bytes",
) -> bytes:
    """The whole body; past ``limit`` bytes (declared or streamed) a 413 naming ``what``
    and the ``setting`` that bounds it."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, what, setting)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, what, setting)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(
    request: Request, limit: int, setting: str = "limits.max_body_bytes"
) -> dict[str, Any]:
    body = await read_body(request, limit, setting=setting)
    return loads(body, _depth_limit(request))


def loads(body: bytes, depth: int = DEFAULT_JSON_DEPTH) -> dict[str, Any]:
    """``body`` as a JSON object, or :class:`InvalidRequest` saying what is wrong with it."""
    if not body:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        raise _too_deep(depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    # Cheap tests first (C speed): fewer brackets than the limit cannot nest deeper, and
    # without a surrogate escape no string can hold one. Only then walk the values.
    if body.count(b"[") + body.count(b"{") > depth:
        check_depth(data, depth)
    if _SURROGATE_ESCAPE.search(body):
        check_text(data)
    return data


def check_depth(data: Any, depth: int) -> None:
    """:class:`InvalidRequest` if ``data`` nests arrays and objects deeper than ``depth``
    (level by level, without recursion: the containers only)."""
    level: list[Any] = [data]
    for _ in range(depth):
        inner: list[Any] = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            inner.extend(item for item in items if type(item) in _CONTAINERS)
        if not inner:
            return
        level = inner
    raise _too_deep(depth)


def check_text(data: Any) -> None:
    """:class:`InvalidRequest` naming the first string (key or value) in ``data`` that is
    not valid Unicode text (a lone surrogate)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            _text(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                _text(key, path)
                stack.append((item, path))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        param = where.encode("utf-8", "backslashreplace").decode()
        raise InvalidRequest(
            f"invalid request: '{param}': a lone UTF-16 surrogate (\\ud800-\\udfff) is not text",
            param=param or None,
        ) from None


def _too_deep(depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"request body is nested deeper than {depth} levels (limits.max_json_depth)"
    )


def _depth_limit(request: Request) -> int:
    services = getattr(request.app.state, "services", None)
    return int(services.settings.limits.max_json_depth) if services else DEFAULT_JSON_DEPTH


def parse(model: type[Model], data: dict[str, Any]) -> Model:
    """``data`` as ``model``, strictly: ``"10"`` is not an integer nor ``"yes"`` a boolean
    (OpenAI refuses them too); an integer is still a number (``temperature: 1``)."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from exc
