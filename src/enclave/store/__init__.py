"""Storage: SQLAlchemy 2.0 (async) models, the engine, Alembic migrations, repositories.

SQLite (one WAL file in the data directory) by default; PostgreSQL when
``database_url`` says so. The same code and the same tests run on both.
"""
