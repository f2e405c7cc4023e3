"""Schema migrations: ``upgrade(engine)`` brings a database to the newest revision.

Alembic runs from the package (``enclave/store/migrations``); no ``alembic.ini`` is
needed. It is idempotent, and safe when several processes start at once: on
PostgreSQL the whole upgrade runs in one transaction under an advisory lock; on SQLite
under ``BEGIN IMMEDIATE`` (the write lock; others wait for it within the busy timeout).
Either way a process that waited finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")
PG_LOCK = 0x656E636C61766500  # "enclave\0": the key of the advisory lock


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    """The newest revision in the package."""
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert found is not None
    return found


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision`` (default: the newest)."""
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await connection.begin()
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK}
                )
        await connection.run_sync(_upgrade, revision)
        await connection.commit()


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at (``None``: not migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def include_name(name: str | None, type_: Any, parent_names: Any) -> bool:
    """Autogenerate's filter: leave out what migrations make by hand for one dialect.

    Table modules list such names (or prefixes: ``kb_fts`` covers ``kb_fts_data``) in
    ``Base.metadata.info["unmanaged"]``.
    """
    from enclave.store.schema import metadata

    unmanaged: set[str] = metadata.info.get("unmanaged", set())
    return name is None or not any(name == u or name.startswith(u + "_") for u in unmanaged)


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
