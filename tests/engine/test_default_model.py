"""The newcomer's first question, answered by the bundled Qwen2.5-Coder-1.5B on the CPU."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import prepare
from tests.gateway import ASK, run_gateway

pytestmark = pytest.mark.default_model

QWEN = "qwen2.5-coder-1.5b-instruct"


def test_ask_about_tar_in_chinese(tmp_path: Path) -> None:
    prepare(tmp_path, QWEN)
    config = {"engine": {"embeddings": False, "ocr": False}}
    with run_gateway(tmp_path, config, timeout=300) as gateway:
        question = "tar 命令如何排除特定文件夹?"
        done = subprocess.run(
            [ASK, "--temperature", "0", "--max-tokens", "160", question],
            env={"ENCLAVE_URL": gateway.url, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # tar excludes with --exclude=PATTERN or -X FILE (a file of patterns); both are right.
    assert re.search(r"--exclude|-X\b", done.stdout), done.stdout
    assert "tar " in done.stdout
