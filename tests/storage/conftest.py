"""Every storage test runs on SQLite and on PostgreSQL: see ``tests.storage.fixtures``."""

from tests.storage.fixtures import database_url, postgres, store

__all__ = ["database_url", "postgres", "store"]
