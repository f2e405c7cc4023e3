"""Stage 2: which model answers: a pool of the router, or an assistant (``assistant/NAME``)
in front of its profile's base pool; refused unless the caller's key may use the model the
client named. What differs between the two lives in their objects (:mod:`.model`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from enclave.gateway.access import ModelScope
from enclave.gateway.chat.intake import Asked
from enclave.gateway.chat.model import Assistant, Model, Plain
from enclave.profiles import PREFIX
from enclave.router import Router

if TYPE_CHECKING:
    from enclave.gateway.services import Services


async def model(
    request: Request, services: Services, router: Router, asked: Asked, scope: ModelScope
) -> Model:
    name = asked.chat.model
    if name.startswith(PREFIX):
        scope.check(name)
        profile = await services.assistants.resolve(name)
        assert profile is not None
        return Assistant(services.assistants, profile, request)
    pool = router.resolve(name, "chat", visible=scope.allows)
    scope.check(pool.public)
    return Plain(pool, request, services.assistants.conversations)
