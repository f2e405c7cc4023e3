"""Fixtures shared by unit tests that need the real embedder or a fresh SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from enclave.store.repos import Store, open_store
from enclave.vectors.embedding import LocalEmbedder


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    """The bundled embedder, loaded once per module."""
    return LocalEmbedder()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A new SQLite database, migrated."""
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}")
    try:
        yield opened
    finally:
        await opened.aclose()
