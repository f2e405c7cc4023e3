"""Document bombs against a real gateway: an upload is answered at once (202 and a job),
each file over a ``knowledge.ingest`` limit fails alone with an error naming the file and
the limit while good files ingest, a job can be cancelled (its parse is killed), and
document names are one plain file name."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway
from tests.gateway import cli as run_cli
from tests.kbjobs import docx_bomb, upload, wait_job

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

NO_ENGINE = {"enabled": False, "embeddings": False, "ocr": False}
INGEST = {"timeout_s": 15, "max_text_chars": 100_000, "max_compression_ratio": 1_000_000}
GOOD = b"# Quokkas\n\nQuokkas live on Rottnest Island and smile for photographs.\n"
SLOW = docx_bomb(40_000)  # under every size limit, minutes of python-docx
LONG = b"lorem ipsum dolor sit amet " * 8000  # 216 000 characters


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gateway, *args, stdin="secret-password\n", timeout=180)


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = {"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}
    config = {"auth": {"mode": "on"}, "engine": NO_ENGINE, "upstreams": [upstream],
              "knowledge": {"ingest": INGEST}}  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("harden-kb"), config) as gw:
        for name, role in (("alice", "admin"), ("bob", "user")):
            done = cli(gw, "users", "add", name, "--role", role, "--password-stdin")
            assert done.returncode == 0, done.stderr
        yield gw


@pytest.fixture(scope="module")
def keys(gateway: Gateway) -> dict[str, dict[str, str]]:
    found = {}
    for user in ("alice", "bob"):
        done = cli(gateway, "keys", "create", "--user", user, "--name", "t")
        assert done.returncode == 0, done.stderr
        found[user] = {"Authorization": f"Bearer {done.stdout.strip()}"}
    return found


def call(gateway: Gateway, method: str, path: str, headers: dict[str, str],
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    return httpx.request(method, gateway.url + path, headers=headers, trust_env=False,
                         timeout=120, **kwargs)  # fmt: skip


def put(gateway: Gateway, headers: dict[str, str], kb: str, name: str, data: bytes) -> Any:
    sent = call(gateway, "PUT", f"/api/kb/{kb}/documents/{name}", headers, content=data)
    assert sent.status_code == 202, sent.text
    return sent.json()


def test_each_bad_file_fails_alone_by_name_while_good_ones_ingest(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    assert call(gateway, "POST", "/api/kb", alice, json={"name": "bombs"}).status_code == 201
    slow = put(gateway, alice, "bombs", "slow.docx", SLOW)
    assert slow["status"] in {"queued", "running"}  # answered before it was ingested
    assert (slow["files"], slow["files_total"], slow["files_done"]) == (["slow.docx"], 1, 0)
    long = put(gateway, alice, "bombs", "long.txt", LONG)
    good = put(gateway, alice, "bombs", "quokka.md", GOOD)
    assert call(gateway, "GET", f"/api/kb/bombs/jobs/{slow['id']}", bob).status_code == 403

    slow, long, good = (wait_job(gateway, alice, job) for job in (slow, long, good))
    assert slow["status"] == "failed"
    assert slow["errors"] == {
        "slow.docx": "slow.docx: parsing took longer than 15 s (knowledge.ingest.timeout_s)"
    }
    assert long["status"] == "failed"
    assert long["errors"] == {
        "long.txt": "long.txt: more than 100000 characters of text "
        "(knowledge.ingest.max_text_chars)"
    }
    assert good["status"] == "done", good
    assert good["errors"] == {}
    assert good["result"]["added"] == ["quokka.md"]
    assert good["files_done"] == good["files_total"] == 1
    assert good["chunks_done"] == good["chunks_total"] > 0
    listed = call(gateway, "GET", "/api/kb/bombs/jobs", alice).json()["data"]
    assert [job["id"] for job in listed] == [slow["id"], long["id"], good["id"]]
    hits = call(gateway, "POST", "/api/kb/bombs/search", bob, json={"query": "Rottnest"})
    assert [hit["document"] for hit in hits.json()["data"]] == ["quokka.md"]


def test_the_cli_reports_each_bad_file_on_one_line_and_ingests_the_rest(
    gateway: Gateway, tmp_path: Path
) -> None:
    for name, data in (("slow.docx", SLOW), ("long.txt", LONG), ("quokka.md", GOOD)):
        (tmp_path / name).write_bytes(data)
    assert cli(gateway, "kb", "create", "cli-bombs").returncode == 0
    added = cli(gateway, "kb", "add", "cli-bombs", str(tmp_path))
    assert added.returncode == 1
    skipped = [line for line in added.stderr.splitlines() if line.startswith("enclave: skipped")]
    assert skipped == [
        f"enclave: skipped {tmp_path / 'long.txt'}: long.txt: more than 100000 characters "
        "of text (knowledge.ingest.max_text_chars)",
        f"enclave: skipped {tmp_path / 'slow.docx'}: slow.docx: parsing took longer than "
        "15 s (knowledge.ingest.timeout_s)",
    ]
    assert "1 added, 0 updated, 0 unchanged, 2 failed" in added.stdout


def _parsers(gateway: Gateway) -> list[psutil.Process]:
    children = psutil.Process(gateway.running.process.pid).children(recursive=True)
    return [c for c in children if "enclave.knowledge.sandbox" in " ".join(_cmdline(c))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # it ended meanwhile
        return []


def _until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_cancel_stops_a_running_job_and_kills_its_parse(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    alice = keys["alice"]
    assert call(gateway, "POST", "/api/kb", alice, json={"name": "cancel"}).status_code == 201
    job = put(gateway, alice, "cancel", "slow.docx", SLOW)
    wait_job(gateway, alice, job, until=lambda j: j["status"] == "running")
    _until(lambda: _parsers(gateway), "the parse never started")
    cancelled = call(gateway, "POST", f"/api/kb/cancel/jobs/{job['id']}/cancel", alice)
    assert cancelled.status_code == 200, cancelled.text
    finished = wait_job(gateway, alice, job)
    assert finished["status"] == "cancelled", finished
    _until(lambda: not _parsers(gateway), "the parse was not killed")
    assert call(gateway, "GET", "/api/kb/cancel", alice).json()["documents"] == 0
    assert upload(gateway, alice, "cancel", "quokka.md", GOOD)["status"] == "done"
    missing = call(gateway, "GET", "/api/kb/cancel/jobs/ingest_nope", alice)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fpasswd.md", "notes%2Fa.md", "a%5Cb.md", "nul%00.md", "bell%07.md",
     "x" * 297 + ".md"],
)  # fmt: skip
def test_bad_document_names_are_refused_naming_the_rule(
    gateway: Gateway, keys: dict[str, dict[str, str]], name: str
) -> None:
    alice = keys["alice"]
    call(gateway, "POST", "/api/kb", alice, json={"name": "names"})
    refused = call(gateway, "PUT", f"/api/kb/names/documents/{name}", alice, content=GOOD)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "filename"
    assert "a document name is one file name of at most 255 characters" in error["message"]
    assert call(gateway, "GET", "/api/kb/names", alice).json()["documents"] == 0
