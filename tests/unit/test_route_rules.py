"""Every route declares exactly one permission rule from ``gateway/access.py``, so a new
route without one cannot land; and the committed OpenAPI document is current."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from enclave.gateway import access
from enclave.gateway.openapi import DEFAULT_PATH, render

ROOT = Path(__file__).resolve().parents[2]
OPEN = {"/health", "/api/auth/login", "/api/auth/refresh"}
CONSOLE = {"/", "/admin", "/ui/{name:path}"}  # the web console's pages and files


@pytest.fixture(scope="module")
def app() -> FastAPI:
    from enclave.config import Settings
    from enclave.gateway.app import create_app

    return create_app(Settings(engine={"enabled": False, "embeddings": False, "ocr": False}))


def calls(dependant: Dependant) -> Iterator[Any]:
    """What a route runs: its dependencies, and the rule its endpoint applies itself."""
    if dependant.call in access.APPLIED:
        yield access.APPLIED[dependant.call]
    for sub in dependant.dependencies:
        yield sub.call
        yield from calls(sub)


def test_every_route_declares_exactly_one_rule(app: FastAPI) -> None:
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/v1/chat/completions", "/api/admin/keys", "/health"}
    for route in routes:
        rules = [call for call in calls(route.dependant) if call in access.RULES]
        assert len(rules) == 1, f"{route.methods} {route.path} declares {rules}: one rule"
        if route.path.startswith(("/v1/", "/api/")) and route.path not in OPEN:
            assert rules != [access.public], f"{route.path} must not be public"
    public = {r.path for r in routes if any(c is access.public for c in calls(r.dependant))}
    assert public == OPEN | CONSOLE


def test_admin_routes_are_for_administrators(app: FastAPI) -> None:
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/api/admin/"):
            assert access.admin in set(calls(route.dependant)), route.path


def test_the_committed_openapi_document_is_current(app: FastAPI) -> None:
    committed = (ROOT / DEFAULT_PATH).read_text(encoding="utf-8")
    assert committed == render(app.openapi()), (
        "docs/openapi.json is stale: run python -m enclave.gateway.openapi"
    )


def test_the_document_describes_every_body_and_answer(app: FastAPI) -> None:
    spec = json.loads(render(app.openapi()))
    paths = spec["paths"]
    assert {"/v1/chat/completions", "/v1/embeddings", "/api/admin/users"} <= set(paths)
    schemas = spec["components"]["schemas"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch") and not path.endswith(
                (
                    "/disable",
                    "/enable",
                    "/revoke",
                    "/rotate",
                    "/logout",
                    "/cancel",
                    "/retry",
                    "/pause",
                    "/resume",
                    "/ws/ticket",
                )
            ):
                assert "requestBody" in operation, f"{method} {path}: no request body"
            assert {"200", "201", "202"} & set(operation["responses"]), path
    for name in ("ChatCompletionRequest", "EmbeddingRequest", "KeyCreate", "AssistantProfile"):
        assert name in schemas
    refs = set(_refs(spec))
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
