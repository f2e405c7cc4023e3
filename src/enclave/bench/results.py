"""What a benchmark run produced: one :class:`LevelResult` per load level, gathered in a
:class:`BenchResult`. Its own module so that the session (which makes them) and the
report and charts (which read them) do not import each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from enclave.bench.metrics import Drift, Sample, Summary, SystemSample, Window
from enclave.bench.runner import LevelRun, Load


@dataclass
class LevelResult:
    label: str
    load: Load
    run: LevelRun
    summary: Summary
    windows: list[Window]
    system: list[SystemSample]
    drift: Drift

    @property
    def samples(self) -> list[Sample]:
        return self.run.samples


@dataclass
class BenchResult:
    config: dict[str, Any]
    levels: list[LevelResult]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
