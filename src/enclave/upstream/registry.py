"""Public model names → the upstream that serves them.

The routing issue turns a route's single upstream into a pool; everything that asks
the registry for a route stays the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from enclave.errors import ModelNotFound
from enclave.protocol import ModelCard
from enclave.upstream.base import Upstream

Kind = Literal["chat", "embeddings"]

DEFAULT_ALIAS = "default"


@dataclass(frozen=True, slots=True)
class Route:
    public: str
    kind: Kind
    upstream: Upstream
    upstream_model: str
    owned_by: str = "enclave"
    context_length: Callable[[], int | None] = lambda: None


class Registry:
    def __init__(self, routes: Iterable[Route], *, default_model: str | None = None) -> None:
        self._routes: dict[tuple[Kind, str], Route] = {}
        for route in routes:
            self._routes.setdefault((route.kind, route.public), route)
        chat = [r.public for r in self._routes.values() if r.kind == "chat"]
        self.default_model = default_model or (chat[0] if chat else None)

    def resolve(self, model: str, kind: Kind) -> Route:
        name = self.default_model if model == DEFAULT_ALIAS and self.default_model else model
        route = self._routes.get((kind, name))
        if route is None:
            raise ModelNotFound(self._not_found(model, kind), param="model")
        return route

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def cards(self) -> list[ModelCard]:
        seen: dict[str, ModelCard] = {}
        for route in self._routes.values():
            seen.setdefault(
                route.public,
                ModelCard(
                    id=route.public, owned_by=route.owned_by, max_model_len=route.context_length()
                ),
            )
        return list(seen.values())

    def _not_found(self, model: str, kind: Kind) -> str:
        known = sorted(r.public for r in self._routes.values() if r.kind == kind)
        offer = ", ".join(known) if known else "none"
        what = "chat model" if kind == "chat" else "embedding model"
        return f"The model '{model}' does not exist as a {what} here; available: {offer}"
