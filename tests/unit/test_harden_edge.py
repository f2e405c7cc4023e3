"""The real app (``create_app``, its edge and audit writer on a SQLite file): a request
that ends in an unexpected error is answered with the OpenAI envelope and audited like any
other, instead of leaving Starlette's outermost handler to answer with no record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.gateway.app import create_app


def test_an_unexpected_error_is_a_500_envelope_and_is_audited(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, engine={"enabled": False, "embeddings": False, "ocr": False})
    app = create_app(settings)

    @app.get("/api/broken")
    async def broken() -> None:  # what any bug in a route does
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        replies = [
            client.get("/api/broken", headers={"x-request-id": f"req-{i}"}) for i in range(3)
        ]
    for reply in replies:
        assert reply.status_code == 500
        assert reply.json()["error"]["type"] == "internal_error"
    with sqlite3.connect(tmp_path / "enclave.db") as db:
        rows = db.execute("SELECT request_id, status FROM audit WHERE action = 'GET /api/broken'")
        assert sorted(rows) == [("req-0", 500), ("req-1", 500), ("req-2", 500)]
