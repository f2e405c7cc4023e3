"""The PostgreSQL the storage suite runs on: not root, loopback only, pgvector present."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fakes import postgres as pg
from tests.fakes.procs import HOST


def test_server_runs_unprivileged_with_pgvector(postgres: pg.PostgresServer) -> None:
    assert postgres.process is not None
    status = Path(f"/proc/{postgres.process.pid}/status").read_text(encoding="utf-8")
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0
    if os.geteuid() == 0:
        assert uid == pg.ensure_user().pw_uid
    assert postgres.psql("SHOW listen_addresses") == HOST
    assert postgres.psql("SHOW server_version").startswith("16.")
    name = "t_vector_check"
    postgres.create_database(name)
    try:
        version = postgres.psql(
            "CREATE EXTENSION vector; SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            name,
        )
        assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)
        distance = postgres.psql("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector", name)
        assert float(distance) == 2.0
    finally:
        postgres.drop_database(name)
