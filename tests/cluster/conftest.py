"""Every test here is ``live``: several real gateway replicas behind a real nginx, on one
real PostgreSQL and Redis (tests/replicas.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import mark_directory


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_directory(items, Path(__file__).parent, pytest.mark.live)
