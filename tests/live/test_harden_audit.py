"""The audit log as evidence, as an attacker with write access to the database meets it:
a real `enclave serve` writes its chain and its witness; on a copy of its data directory
the database is wiped or rolled back to an older, genuinely signed head, and the real
`enclave audit verify` must fail naming the missing records. Rotating `secret.key`
needs `enclave audit resign`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway import ENCLAVE, Gateway, run_gateway

CONFIG = {"engine": {"enabled": False, "embeddings": False, "ocr": False}}  # witness: default


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("audit"), CONFIG, health="/v1/models") as gw:
        yield gw


def calls(gateway: Gateway, count: int) -> None:
    """Audited calls, then wait until the witness has seen the newest record."""
    for _ in range(count):
        assert httpx.get(gateway.v1 + "/models", trust_env=False, timeout=10).status_code == 200
    newest = last_seq(gateway.home)
    deadline = time.monotonic() + 15
    while witnessed(gateway.home) < newest:
        assert time.monotonic() < deadline, "the witness never saw the newest record"
        time.sleep(0.05)


def last_seq(home: Path) -> int:
    with sqlite3.connect(home / "enclave.db") as db:
        return int(db.execute("SELECT max(seq) FROM audit").fetchone()[0])


def witness_file(home: Path) -> Path:
    return home / "witness" / "audit.witness"


def witnessed(home: Path) -> int:
    path = witness_file(home)
    if not path.exists():
        return 0
    return max((json.loads(line)["seq"] for line in path.read_text().splitlines()), default=0)


def copy_home(gateway: Gateway, target: Path) -> Path:
    shutil.copytree(gateway.home, target, ignore=shutil.ignore_patterns("logs"))
    return target


def enclave(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENCLAVE_HOME": str(home)}
    return subprocess.run([ENCLAVE, "--config", str(home / "enclave.yaml"), *args], text=True,
                          capture_output=True, env=env, timeout=120, check=False)  # fmt: skip


def head(home: Path) -> tuple[int, str, str]:
    with sqlite3.connect(home / "enclave.db") as db:
        row = db.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    return int(row[0]), str(row[1]), str(row[2])


def test_the_gateway_witnesses_its_chain(gateway: Gateway) -> None:
    calls(gateway, 3)
    path = witness_file(gateway.home)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    verified = enclave(gateway.home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    first, second = verified.stdout.splitlines()
    assert first.startswith("ok: ")
    assert second.startswith("witness: ")
    assert "agree with the chain" in second


def test_wiping_both_tables_is_found(gateway: Gateway, tmp_path: Path) -> None:
    calls(gateway, 2)
    home = copy_home(gateway, tmp_path / "copy")
    newest = witnessed(home)
    with sqlite3.connect(home / "enclave.db") as db:
        db.execute("DELETE FROM audit")
        db.execute("DELETE FROM audit_head")
    broken = enclave(home, "audit", "verify")
    assert broken.returncode == 1, broken.stdout
    assert broken.stdout.startswith(
        f"broken at record 1: records 1–{newest} are missing: the witness saw seq {newest} at "
    )


def test_rolling_back_to_an_older_signed_head_is_found(gateway: Gateway, tmp_path: Path) -> None:
    calls(gateway, 1)
    older = head(gateway.home)  # genuinely signed
    calls(gateway, 4)
    home = copy_home(gateway, tmp_path / "copy")
    newest = witnessed(home)
    with sqlite3.connect(home / "enclave.db") as db:
        db.execute("DELETE FROM audit WHERE seq > ?", (older[0],))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", older)
    assert enclave(home, "audit", "verify", "--no-witness").returncode == 0  # the hole
    broken = enclave(home, "audit", "verify")
    assert broken.returncode == 1, broken.stdout
    assert broken.stdout.startswith(
        f"broken at record {older[0] + 1}: records {older[0] + 1}–{newest} are missing: "
        f"the witness saw seq {newest} at "
    )


def test_a_deleted_witness_cannot_be_checked(gateway: Gateway, tmp_path: Path) -> None:
    calls(gateway, 1)
    home = copy_home(gateway, tmp_path / "copy")
    witness_file(home).unlink()
    refused = enclave(home, "audit", "verify")
    assert refused.returncode == 3, refused.stdout
    assert refused.stdout.startswith("cannot check against the witness: the witness ")
    assert "--no-witness" in refused.stdout
    alone = enclave(home, "audit", "verify", "--no-witness")
    assert alone.returncode == 0
    assert alone.stdout.splitlines()[1] == "witness: not checked (--no-witness)"


def test_rotating_the_key_needs_resign(gateway: Gateway, tmp_path: Path) -> None:
    calls(gateway, 2)
    home = copy_home(gateway, tmp_path / "copy")
    (home / "secret.key").rename(home / "old.key")  # a new one is made on first use
    broken = enclave(home, "audit", "verify")
    assert broken.returncode == 1
    assert "signature is invalid" in broken.stdout
    assert "enclave audit resign --old-key FILE" in broken.stdout
    done = enclave(home, "audit", "resign", "--old-key", str(home / "old.key"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("re-signed the head and 0 checkpoint(s) of ")
    verified = enclave(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[1].endswith("signed with an earlier key")
    last = json.loads(witness_file(home).read_text().splitlines()[-1])
    assert last["event"] == "resign"
    again = enclave(home, "audit", "resign", "--old-key", str(home / "old.key"))
    assert again.returncode == 1
    assert "nothing re-signed" in again.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "resign"),  # --old-key is required
        ("audit", "resign", "--old-key", "/nonexistent/old.key"),
        ("audit", "resign", "--old-key", "{home}/secret.key"),  # the same key
        ("audit", "verify", "--witness", "/nonexistent/audit.witness"),
    ],
)
def test_bad_input_is_one_line(gateway: Gateway, args: tuple[str, ...]) -> None:
    done = enclave(gateway.home, *(a.replace("{home}", str(gateway.home)) for a in args))
    assert done.returncode in (1, 2), done.stdout
    assert "Traceback" not in done.stderr
    assert done.stderr.strip()
    if done.returncode == 1:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
