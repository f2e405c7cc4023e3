"""A spooled upload outlives an attempt that may be tried again: a lost lease, or an
error while attempts remain; it is forgotten after success or the final attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from enclave.knowledge.spool import Spool
from enclave.tasks.runctx import LeaseLost
from tests.unit import test_tasks_ingest as base
from tests.unit.test_tasks_ingest import GOOD, Run, ingest, spooled

spool, kbs, run = base.spool, base.kbs, base.run  # embedder and store: tests/unit/conftest.py

pytestmark = pytest.mark.anyio


@dataclass
class Failing(Run):
    """A run whose event writes fail with ``error`` (a lost lease, the database down)."""

    error: type[BaseException] = LeaseLost

    async def progress(self, percent: float | None = None, message: str | None = None) -> None:
        raise self.error("the event could not be written")


@pytest.mark.parametrize(
    ("error", "attempt", "kept"),
    [(LeaseLost, 2, True), (OSError, 1, True), (OSError, 2, False)],
)
async def test_the_upload_stays_for_the_attempt_that_follows(
    run: Run, spool: Spool, error: type[BaseException], attempt: int, kept: bool
) -> None:
    # the run's max_attempts is 2
    failing = Failing(run.home, run.settings, kbs=run.kbs, attempt=attempt, error=error)
    files = [spooled(spool, "quokka.md", GOOD)]
    with pytest.raises(error):
        await ingest(failing, files=files)
    assert spool.count() == (1 if kept else 0)
    if kept:  # the next attempt finds it
        done: dict[str, Any] = await ingest(run, files=files)
        assert done["documents"] == 1
        assert spool.count() == 0
