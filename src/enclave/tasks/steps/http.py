"""``http``: call an intranet endpoint under a prefix of ``tasks.http_allowlist``.

Redirects are followed by hand, at most :data:`MAX_REDIRECTS`, and only while each target
is on the allowlist too; the body is read up to ``tasks.http_max_bytes`` and the whole
call bounded by ``tasks.http_timeout_s``. Proxy variables of the environment are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import Field

from enclave.errors import InvalidRequest, PayloadTooLarge, UpstreamError, UpstreamTimeout
from enclave.tasks import safety
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpOptions(Options):
    url: str = Field(description="must start with a prefix of tasks.http_allowlist")
    method: Literal["GET", "POST"] = "GET"
    json_body: Any = Field(None, alias="json", description="a JSON body (POST)")
    headers: dict[str, str] = Field(default_factory=dict)
    check: bool = Field(True, description="fail the step when the answer is 4xx or 5xx")


@dataclass(frozen=True)
class Answer:
    status: int
    url: str
    text: str
    content_type: str

    def output(self) -> dict[str, Any]:
        found: dict[str, Any] = {"status": self.status, "text": self.text}
        if "json" in self.content_type:
            with contextlib.suppress(ValueError):
                found["json"] = json.loads(self.text)
        return found


async def fetch(
    ctx: RunContext, url: str, *, method: str = "GET", body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:  # fmt: skip
    """One call (redirects included) within the allowlist, size and time limits."""
    settings = ctx.settings
    safety.check_url(settings, url)
    if any(name.lower() == "host" for name in headers or {}):
        raise InvalidRequest(
            "a Host header may not be set: the URL names the host", param="headers"
        )
    try:
        async with (
            asyncio.timeout(settings.http_timeout_s),
            httpx.AsyncClient(
                trust_env=False, follow_redirects=False, timeout=settings.http_timeout_s
            ) as client,
        ):
            return await _follow(ctx, client, url, (method, body, headers or {}))
    except TimeoutError as exc:
        raise UpstreamTimeout(
            f"{method} {url} took longer than tasks.http_timeout_s ({settings.http_timeout_s} s)"
        ) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{method} {url} failed: {exc}") from exc


async def _follow(
    ctx: RunContext, client: httpx.AsyncClient, url: str, call: tuple[str, Any, dict[str, str]]
) -> Answer:
    method, body, headers = call
    for _hop in range(MAX_REDIRECTS + 1):
        content = None if body is None else json.dumps(body).encode()
        sent = {**headers, **({"content-type": "application/json"} if content else {})}
        request = client.build_request(method, url, content=content, headers=sent)
        response = await client.send(request, stream=True)
        try:
            if response.status_code not in REDIRECTS or "location" not in response.headers:
                return await _read(ctx, response, url)
        finally:
            await response.aclose()
        url = str(response.url.join(response.headers["location"]))
        safety.check_url(ctx.settings, url, param="redirect")
        if response.status_code in {301, 302, 303}:
            method, body = "GET", None
    raise UpstreamError(f"more than {MAX_REDIRECTS} redirects from {url}")


async def _read(ctx: RunContext, response: httpx.Response, url: str) -> Answer:
    limit = int(ctx.settings.http_max_bytes)
    data = bytearray()
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) > limit:
            raise PayloadTooLarge(f"the answer of {url} is longer than tasks.http_max_bytes "
                                  f"({limit} bytes)")  # fmt: skip
    text = data.decode(response.encoding or "utf-8", errors="replace")
    kind = response.headers.get("content-type", "")
    return Answer(response.status_code, str(response.url), text, kind)


async def _run(ctx: RunContext, opts: HttpOptions) -> dict[str, Any]:
    answer = await fetch(ctx, opts.url, method=opts.method, body=opts.json_body,
                         headers=opts.headers)  # fmt: skip
    if opts.check and answer.status >= 400:
        raise UpstreamError(f"{opts.method} {answer.url} answered {answer.status}: "
                            f"{answer.text[:200]}")  # fmt: skip
    return answer.output()


HTTP = StepKind(
    name="http",
    description="call an allowlisted intranet URL (tasks.http_allowlist); status, text, json",
    options=HttpOptions,
    run=_run,
)
