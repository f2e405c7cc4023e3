"""Who may do what: every permission rule of the gateway, in one module.

The edge (``edge.py``) only authenticates: it puts the caller's :class:`Principal` on
``request.state``. Routes decide with the rules here.
"""

from __future__ import annotations

from starlette.requests import Request

from enclave.auth.apikeys import model_allowed
from enclave.errors import Forbidden
from enclave.gateway.gatekeeper import Principal
from enclave.identity import Actor


def principal_of(request: Request) -> Principal | None:
    """The authenticated caller, or ``None`` when authentication is off."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def actor(request: Request) -> Actor:
    """The caller as the audit log names them."""
    principal = principal_of(request)
    return Actor(
        user=principal.user if principal else None,
        key_prefix=principal.key_prefix if principal else None,
        client_ip=getattr(request.state, "client_ip", None),
        request_id=getattr(request.state, "request_id", None),
    )


def may_use(request: Request, model: str, *, raising: bool = True) -> bool:
    """Whether the caller's key may use ``model`` (its ``--models`` patterns); 403 if not."""
    principal = principal_of(request)
    if principal is None or model_allowed(list(principal.models), model):
        return True
    if raising:
        raise Forbidden(f"this API key may not use the model {model}")
    return False
