"""Who may do what: every permission rule of the gateway, in one module.

The edge (``edge.py``) only authenticates: it puts the caller's :class:`Principal` on
``request.state`` (none when authentication is off). Every route declares exactly one
*rule* from this module as a FastAPI dependency, where the route is declared::

    @router.get("/api/admin/users", dependencies=[Depends(access.admin)])
    async def users(...): ...

    @router.get("/api/memories")
    async def listing(who: access.MemoryAccessDep, ...):
        owner = who.owner(user)  # the caller, or (administrators) the user named

The rules (:data:`RULES`; ``tests/unit/test_route_rules.py`` fails for a route without one):

=====================  ===============================================================
``public``             anyone who can reach the gateway: ``/health``, login, refresh
``authenticated``      any caller the edge let in (a key or session; anyone when
                       authentication is off)
``model_scope``        an authenticated caller, limited to its key's ``--models`` and
                       its user's (a web session: its user's)
``admin``              administrators; closed when authentication is off
``kb_writer``          administrators may change knowledge bases; closed without auth
``memory_owner``       a caller's own memories; administrators may name any user
``conversation_owner`` a caller's own conversations; administrators see everyone's
``task_caller``        any caller the edge let in, as the task service sees it: its own
                       runs and schedules; administrators (and everyone without
                       authentication) all of them
=====================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from enclave.auth.apikeys import model_allowed
from enclave.errors import Forbidden
from enclave.gateway.gatekeeper import Principal
from enclave.identity import Actor

if TYPE_CHECKING:
    from enclave.tasks.service import Caller as TaskCaller

LOCAL_USER = "local"  # whose memories they are when the gateway runs without authentication

# Rules are coroutines: FastAPI would run a plain function in a worker thread, a thread
# hop on every call.
RULES: set[Callable[..., Any]] = set()
R = TypeVar("R", bound=Callable[..., Any])


def rule(function: R) -> R:
    """Mark ``function`` as a permission rule routes may declare."""
    RULES.add(function)
    return function


def principal_of(request: Request) -> Principal | None:
    """The authenticated caller, or ``None`` when authentication is off."""
    # The edge's dict, read directly: Starlette's ``request.state`` raises and catches an
    # AttributeError for a missing name, which costs on every call of the hot path.
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return principal


def actor(request: Request) -> Actor:
    """The caller as the audit log names them."""
    state = request.scope.get("state", {})
    principal: Principal | None = state.get("principal")
    return Actor(
        user=principal.user if principal else None,
        key_prefix=principal.key_prefix if principal else None,
        client_ip=state.get("client_ip"),
        request_id=state.get("request_id"),
    )


def _is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.role == "admin"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as a route sees it."""

    principal: Principal | None

    @property
    def is_admin(self) -> bool:
        return _is_admin(self.principal)

    @property
    def role(self) -> str | None:
        return self.principal.role if self.principal else None


@dataclass(frozen=True)
class ModelScope:
    """The models a caller may use: its key's ``--models`` patterns and its user's (both
    must allow a model); all without authentication."""

    principal: Principal | None

    def allows(self, model: str) -> bool:
        principal = self.principal
        return principal is None or (
            model_allowed(principal.models, model) and model_allowed(principal.user_models, model)
        )

    def check(self, model: str) -> None:
        if not self.allows(model):
            principal = self.principal
            who = "this API key" if principal and principal.key_prefix else "this session"
            raise Forbidden(f"{who} may not use the model {model}")


@dataclass(frozen=True)
class MemoryAccess:
    """Whose memories a call is about: the caller's, or any user's for administrators."""

    principal: Principal | None

    def owner(self, asked: str | None) -> str:
        principal = self.principal
        me = principal.user if principal and principal.user else LOCAL_USER
        if asked is None or asked == me:
            return me
        if not _is_admin(principal):
            raise Forbidden("only administrators may act on another user's memories")
        return asked

    def archive_policy(self) -> None:
        """Running the archive policy (over every user) is for administrators."""
        if not _is_admin(self.principal):
            raise Forbidden("running the archive policy is for administrators")


@dataclass(frozen=True)
class ConversationAccess:
    """Whose conversations a call may see: the caller's; an administrator's, everyone's."""

    principal: Principal | None

    def owner(self, *, everyone: bool = False) -> str | None:
        """The owner to list; ``None`` (everyone's) for an administrator asking for all, or
        when there is no authentication."""
        principal = self.principal
        if principal is None or principal.user is None:
            return None
        if everyone:
            if not _is_admin(principal):
                raise Forbidden("only administrators may list everyone's conversations")
            return None
        return principal.user

    def finder(self) -> str | None:
        """The owner to look one conversation up by: administrators find anyone's."""
        return self.owner(everyone=_is_admin(self.principal))


# --- the rules --------------------------------------------------------------------------


@rule
async def public() -> None:
    """Anyone who can reach the gateway (the edge still applies the address allowlist)."""


@rule
async def authenticated(request: Request) -> Caller:
    """Any caller the edge let in: a valid key or session, anyone without authentication."""
    return Caller(principal_of(request))


@rule
async def model_scope(request: Request) -> ModelScope:
    """An authenticated caller, limited to the models of its key."""
    return ModelScope(principal_of(request))


def _administrator(request: Request, needs_auth: str, refused: str) -> Caller:
    principal = principal_of(request)
    if principal is None:
        # Without authentication anyone who can connect would be an administrator.
        raise Forbidden(f"{needs_auth} needs authentication: set auth.mode to on")
    if not _is_admin(principal):
        raise Forbidden(refused)
    return Caller(principal)


@rule
async def admin(request: Request) -> Caller:
    """Administrators only; closed when authentication is off."""
    return _administrator(request, "the admin API", "this route is for administrators")


@rule
async def kb_writer(request: Request) -> Caller:
    """Changing knowledge bases: administrators only; closed when authentication is off."""
    return _administrator(
        request, "changing knowledge bases", "changing knowledge bases is for administrators"
    )


@rule
async def memory_owner(request: Request) -> MemoryAccess:
    """A caller's own memories; administrators may name any user."""
    return MemoryAccess(principal_of(request))


@rule
async def conversation_owner(request: Request) -> ConversationAccess:
    """A caller's own conversations; administrators may act on anyone's."""
    return ConversationAccess(principal_of(request))


@rule
async def task_caller(request: Request) -> TaskCaller:
    """Any caller the edge let in; the task service shows it its own runs and schedules,
    all of them to administrators and, without authentication, to everyone."""
    return task_caller_of(principal_of(request), actor(request))


def task_caller_of(principal: Principal | None, who: Actor) -> TaskCaller:
    """The task service's view of a caller (the WebSocket, which has no Request, too)."""
    from enclave.tasks.service import Caller as TaskCaller

    if principal is None:
        return TaskCaller(user=None, admin=True, actor=who)
    return TaskCaller(user=principal.user, admin=_is_admin(principal), actor=who,
                      models=principal.models, user_models=principal.user_models)  # fmt: skip


# The hot /v1 calls apply ``model_scope`` by a plain call instead: FastAPI resolving one
# dependency cost about 35 µs of CPU a request (py-spy under bench/gateway_overhead.py),
# 4-5 % of a non-streamed call through the gateway. ``APPLIED`` says which rule each such
# endpoint applies, for tests/unit/test_route_rules.py.
APPLIED: dict[Callable[..., Any], Callable[..., Any]] = {}
Scoped = Callable[[Request, ModelScope], Awaitable[Response]]


def scoped(endpoint: Scoped) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` called with the caller's :class:`ModelScope` (the ``model_scope`` rule)."""

    async def handler(request: Request) -> Response:
        return await endpoint(request, ModelScope(principal_of(request)))

    # Its name and text for the OpenAPI document; not functools.wraps, whose __wrapped__
    # would show FastAPI the endpoint's own parameters.
    handler.__name__, handler.__doc__ = endpoint.__name__, endpoint.__doc__
    APPLIED[handler] = model_scope
    return handler


CallerDep = Annotated[Caller, Depends(authenticated)]
ModelScopeDep = Annotated[ModelScope, Depends(model_scope)]
MemoryAccessDep = Annotated[MemoryAccess, Depends(memory_owner)]
ConversationAccessDep = Annotated[ConversationAccess, Depends(conversation_owner)]
PUBLIC = Depends(public)
ADMIN = Depends(admin)
KB_WRITER = Depends(kb_writer)
AUTHENTICATED = Depends(authenticated)
