"""What the OpenAPI document says beyond the routes' own types, and the document itself.

Routes that read their JSON body by hand (``body.read_json``, for the size limit and
our error messages) declare it with ``openapi_extra=json_body(Model)``. ``app.openapi()``
is :func:`document`; ``python -m enclave.gateway.openapi`` writes it to
``docs/openapi.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from enclave.protocol import ErrorEnvelope

if TYPE_CHECKING:
    from fastapi import FastAPI

DOCUMENTED = ("/v1/", "/api/")
REF = "#/components/schemas/{model}"
BODIES: dict[str, type[BaseModel]] = {}  # the models json_body() named, by name

# Every error is the OpenAI envelope (gateway/errors.py); a bad parameter is a 400, not
# FastAPI's 422, and naming 4XX keeps FastAPI from documenting one.
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorEnvelope, "description": "refused: the OpenAI error envelope"},
    "5XX": {"model": ErrorEnvelope, "description": "failed: the OpenAI error envelope"},
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a JSON ``model`` by hand."""
    BODIES[model.__name__] = model
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def raw_body(description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is a file, any type."""
    content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the app's ``/v1`` and ``/api`` routes."""
    from fastapi.openapi.utils import get_openapi

    routes = [r for r in app.routes if getattr(r, "path", "").startswith(DOCUMENTED)]
    spec = get_openapi(title=app.title, version=app.version, routes=routes)
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    models = [(model, "validation") for _, model in sorted(BODIES.items())]
    _, defs = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    spec["components"]["schemas"] = dict(sorted(schemas.items()))
    _security(spec, routes)
    return spec


def _security(spec: dict[str, Any], routes: list[Any]) -> None:
    """A key or session token as a bearer token on every route but the public ones."""
    from enclave.gateway.access import public

    spec["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key or a session"}
    }
    spec["security"] = [{"bearer": []}]
    for route in routes:
        if public in _calls(route.dependant):
            for method in route.methods - {"HEAD"}:
                spec["paths"][route.path_format][method.lower()]["security"] = []


def _calls(dependant: Any) -> set[Any]:
    found: set[Any] = set()
    for sub in dependant.dependencies:
        found |= {sub.call} | _calls(sub)
    return found
