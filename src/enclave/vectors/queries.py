"""The query vectors of one call: each text embedded once per embedding model.

An assistant's call searches the user's memory and each of its knowledge bases with the
same question; each search used to embed it again (~15-25 ms of CPU each with the bundled
e5 on two cores). A :class:`QueryVectors` made for the call hands every search the vector
of the first. Two embedders give the same vectors when they have the same ``source``
(``"local"`` for the bundled model, the base URL of a remote one) and model name; an
embedder without a ``source`` only shares with itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enclave.vectors.embedding import Embedder, Matrix


class QueryVectors:
    """Query vectors by (embedder, text), for the length of one call (never shared
    between calls: nothing is kept once the call is done)."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[Hashable, str], asyncio.Future[Matrix]] = {}

    async def of(self, embedder: Embedder, text: str) -> Matrix:
        """``embedder.query(text)``, asked only the first time (concurrent searches of one
        call wait for the same answer; a failure is the failure of each)."""
        key = (identity(embedder), text)
        found = self._vectors.get(key)
        if found is None:
            found = self._vectors[key] = asyncio.ensure_future(embedder.query(text))
        return await found

    def __len__(self) -> int:
        """How many texts were embedded."""
        return len(self._vectors)


def identity(embedder: Embedder) -> Hashable:
    """What makes two embedders' query vectors the same."""
    source = getattr(embedder, "source", None)
    if isinstance(source, str):
        return (source, embedder.name, embedder.dims)
    return id(embedder)
