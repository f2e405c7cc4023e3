"""The real embedded engine: llama.cpp in its child process, with a real model. Every
test here is marked ``engine``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.gateway import ENCLAVE
from tests.helpers import mark_directory


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_directory(items, Path(__file__).parent, pytest.mark.engine)


def prepare(home: Path, model: str) -> None:
    """``enclave models prepare MODEL`` into ``home``, as a user would."""
    done = subprocess.run(
        [ENCLAVE, "models", "prepare", model],
        env={"ENCLAVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"enclave models prepare {model} failed: {done.stderr}")
