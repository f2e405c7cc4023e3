"""The driver: the stages of a chat call, in order (see the package's docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from enclave.gateway.chat import finish, intake, prepare, relay, resolve

if TYPE_CHECKING:
    from enclave.gateway.access import ModelScope
    from enclave.gateway.services import Services


async def chat_completions(request: Request, services: Services, scope: ModelScope) -> Response:
    """The stages in order; ``scope`` is the route's rule (the models the key may use)."""
    router = services.router  # this call's snapshot, whatever a reload does meanwhile
    limits = services.settings.limits
    asked = await intake.read(request, limits)
    model = await resolve.model(request, services, router, asked, scope)
    prompt = await prepare.prompt(services, router, limits, asked, model)
    if prompt.parsed.stream:
        streamed = await relay.stream(request, router, prompt, coalesce=finish.as_relayed(model))
        return finish.stream(model, prompt, streamed)
    result = await relay.complete(request, router, prompt)
    return await finish.complete(model, prompt, result)
