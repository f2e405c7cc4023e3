"""The web console in a real headless Chromium (Debian's ``chromium``, driven by
Playwright; never a browser Playwright downloads). Every test here is ``live`` and
``browser``. Each page is guarded: a request to anything but the gateway's own origin is
aborted and fails the test, and so does an uncaught error in the page's scripts.

Screenshots go to ``test-output/screenshots/`` (``shot``), to be looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.console import CHROMIUM, Guard, launch
from tests.fakes.procs import FakeUpstream
from tests.helpers import fake_upstream_for, mark_directory

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mark_directory(items, here, pytest.mark.live)
    mark_directory(items, here, pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module. Not for the session: Playwright's sync API keeps an event
    loop running on the main thread while it is open, and every later test that calls
    ``asyncio.run`` would fail."""
    with launch() as running:
        yield running


@pytest.fixture(scope="module")
def fake(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    """The module's fake upstream, with its ``fake_upstream`` marker's options."""
    with fake_upstream_for(request.node) as upstream:
        yield upstream


@pytest.fixture
def guard() -> Iterator[Guard]:
    """Collects what the pages of one test did wrong; fails the test at its end."""
    found = Guard()
    yield found
    found.check()
