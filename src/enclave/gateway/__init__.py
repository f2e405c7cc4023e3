"""The gateway: ``create_app(settings)`` builds the one ASGI app.

Imported lazily, so the CLI can use :mod:`enclave.gateway.schemas` without FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enclave.gateway.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from enclave.gateway.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
