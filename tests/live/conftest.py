"""Every live test runs `ask` with its own history file, never the developer's own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_ask_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASK_HISTORY", str(tmp_path / "ask-history.db"))
