"""Uploads to a knowledge base as ``kb-ingest`` runs, on a real ``enclave serve``: the
upload is answered at once with its run (``Location: /api/runs/{id}``), the run ingests
it from the spool with progress and the documents are searchable; the spool is bounded
by ``knowledge.ingest.max_jobs``; an upload queued when the gateway stops is ingested by
the next one (nothing of it was in memory)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, audit_records, run_gateway
from tests.gateway import cli as run_cli
from tests.kbjobs import wait_job

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

NO_ENGINE = {"enabled": False, "embeddings": False, "ocr": False}
GOOD = b"# Quokkas\n\nQuokkas live on Rottnest Island and smile for photographs.\n"
OTHER = b"# Wombats\n\nWombats leave cube-shaped droppings on rocks and logs.\n"


def cli(gateway: Gateway, *args: str) -> str:
    done: subprocess.CompletedProcess[str] = run_cli(
        gateway, *args, stdin="secret-password\n", timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def admin_key(gateway: Gateway) -> dict[str, str]:
    cli(gateway, "users", "add", "alice", "--role", "admin", "--password-stdin")
    key = cli(gateway, "keys", "create", "--user", "alice", "--name", "t").strip()
    return {"Authorization": f"Bearer {key}"}


def call(gateway: Gateway, method: str, path: str, headers: dict[str, str],
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    return httpx.request(method, gateway.url + path, headers=headers, trust_env=False,
                         timeout=120, **kwargs)  # fmt: skip


def put(gateway: Gateway, headers: dict[str, str], kb: str, name: str, data: bytes) -> Any:
    sent = call(gateway, "PUT", f"/api/kb/{kb}/documents/{name}", headers, content=data)
    assert sent.status_code == 202, sent.text
    assert sent.headers["Location"] == f"/api/runs/{sent.json()['id']}"
    return sent.json()


def spooled(gateway: Gateway) -> list[str]:
    folder = gateway.home / "kb-spool"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def config(fake: FakeUpstream) -> dict[str, Any]:
    upstream = {"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}
    return {"auth": {"mode": "on"}, "engine": NO_ENGINE, "upstreams": [upstream]}


@pytest.fixture(scope="module")
def gateway(config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("ingest"), config) as gw:
        yield gw


def test_an_upload_is_a_run_that_ingests_with_progress(gateway: Gateway) -> None:
    alice = admin_key(gateway)
    assert call(gateway, "POST", "/api/kb", alice, json={"name": "zoo"}).status_code == 201
    job = put(gateway, alice, "zoo", "quokka.md", GOOD)
    run = job["run"]
    assert (run["object"], run["task"], run["owner"]) == ("task.run", "kb-ingest", "alice")
    assert run["id"] == job["id"]
    [spool] = run["params"]["files"]
    assert spool["name"] == "quokka.md"
    assert job["status"] in {"queued", "running", "done"}

    done = wait_job(gateway, alice, job)
    assert done["status"] == "done", done
    assert (done["files_done"], done["errors"], done["result"]["added"]) == (1, {}, ["quokka.md"])
    assert done["chunks_done"] > 0
    assert done["run"]["status"] == "succeeded"
    assert done["progress"]["percent"] == 100.0
    assert "1 added" in done["progress"]["message"]
    assert done["run"]["result"]["documents"] == 1
    assert done["run"]["last_event"] >= 5  # status, step, progress..., result, status
    assert spooled(gateway) == []  # ingested: gone from the spool

    hits = call(gateway, "POST", "/api/kb/zoo/search", alice, json={"query": "Rottnest"})
    assert [hit["document"] for hit in hits.json()["data"]] == ["quokka.md"]
    listed = call(gateway, "GET", "/api/kb/zoo/jobs", alice).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert call(gateway, "GET", f"/api/kb/other/jobs/{job['id']}", alice).status_code == 404

    actions = [(r["action"], r["user"]) for r in audit_records(gateway)
               if r["action"] in {"task.run.submit", "kb.ingest", "task.run.finish"}]  # fmt: skip
    assert actions == [("task.run.submit", "alice"), ("kb.ingest", "alice"),
                       ("task.run.finish", "alice")]  # fmt: skip


def test_a_queued_upload_survives_a_restart_and_the_spool_is_bounded(
    config: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    ingest = {"ingest": {"max_jobs": 1}}
    idle = {**config, "tasks": {"worker": False}, "knowledge": ingest}  # nobody runs it
    with run_gateway(home, idle) as first:
        alice = admin_key(first)
        assert call(first, "POST", "/api/kb", alice, json={"name": "zoo"}).status_code == 201
        job = put(first, alice, "zoo", "wombat.md", OTHER)
        assert job["status"] == "queued"
        full = call(first, "PUT", "/api/kb/zoo/documents/quokka.md", alice, content=GOOD)
        assert full.status_code == 429, full.text
        assert "knowledge.ingest.max_jobs" in full.json()["error"]["message"]
        assert len(spooled(first)) == 2  # the upload and its grant
    with run_gateway(home, {**config, "knowledge": ingest}) as second:
        done = wait_job(second, alice, job)
        assert done["status"] == "done", done
        assert done["result"]["added"] == ["wombat.md"]
        assert spooled(second) == []
        hits = call(second, "POST", "/api/kb/zoo/search", alice, json={"query": "droppings"})
        assert [hit["document"] for hit in hits.json()["data"]] == ["wombat.md"]
