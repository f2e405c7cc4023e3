"""Every test here is ``live`` (real servers and executables on loopback); every live
test runs `ask` with its own history file, never the developer's own; ``fake`` is the
real fake upstream, one per module, started with the module's ``fake_upstream`` marker's
options (``pytestmark = pytest.mark.fake_upstream(vision=True)``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.procs import FakeUpstream
from tests.helpers import fake_upstream_for, mark_directory


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_directory(items, Path(__file__).parent, pytest.mark.live)


@pytest.fixture(autouse=True)
def private_ask_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASK_HISTORY", str(tmp_path / "ask-history.db"))


@pytest.fixture(scope="module")
def fake(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    with fake_upstream_for(request.node) as upstream:
        yield upstream


@pytest.fixture
def url(fake: FakeUpstream) -> str:
    """The module's fake, its counters zeroed: its root URL."""
    fake.reset()
    return fake.root


@pytest.fixture
def upstream(fake: FakeUpstream) -> Iterator[str]:
    """The module's fake, its counters zeroed: its /v1 URL; the options a test changed
    at run time (scripted replies...) are put back after it."""
    fake.reset()
    yield fake.base_url
    fake.restore()
