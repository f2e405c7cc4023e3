"""Fixtures for every test directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """``@pytest.mark.anyio`` tests run on asyncio (what uvicorn and the gateway use)."""
    return "asyncio"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ENCLAVE_* variable of the developer's shell, and a private XDG data folder, so
    settings come only from what the test sets. Use it with
    ``pytestmark = pytest.mark.usefixtures("clean_env")``."""
    for name in [name for name in os.environ if name.startswith("ENCLAVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
