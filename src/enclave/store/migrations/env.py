"""Alembic environment of enclave.

Run by :func:`enclave.store.migrate.upgrade`, which hands over an open connection of the
application's async engine (``config.attributes["connection"]``) inside a transaction
that already holds the migration lock. Run by the ``alembic`` command (developers:
``alembic -x url=sqlite+aiosqlite:///dev.db revision --autogenerate -m ...`` with
``script_location`` set to this directory), it opens its own async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from enclave.store.db import make_engine
from enclave.store.migrate import include_name
from enclave.store.schema import metadata

target_metadata = metadata


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        include_name=include_name,  # dialect-specific tables and indexes made by hand
    )


def run(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    found = given or context.config.get_main_option("sqlalchemy.url")
    if not found:
        raise SystemExit("give the database: alembic -x url=sqlite+aiosqlite:///path.db ...")
    return found


async def run_own_engine() -> None:
    engine = make_engine(url())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    given: Connection | None = context.config.attributes.get("connection")
    if given is not None:
        run(given)
    else:
        asyncio.run(run_own_engine())


main()
