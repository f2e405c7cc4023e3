"""The gateway: ``create_app(settings)`` builds the one ASGI app."""

from enclave.gateway.app import create_app

__all__ = ["create_app"]
