"""Every storage test runs on SQLite and on PostgreSQL: see ``tests.storage.fixtures``."""

from tests.storage.fixtures import anyio_backend, database_url, postgres, store

__all__ = ["anyio_backend", "database_url", "postgres", "store"]
