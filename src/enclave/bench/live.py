"""The live progress line of ``enclave bench`` on stderr.

On a terminal one line is redrawn twice a second; otherwise (logs, CI) a plain line is
printed every ten seconds. It shows requests done, errors, requests/s, output tokens/s
and the TTFT median of the last requests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from enclave.bench.metrics import Sample, percentile

RECENT = 200
TTY_PERIOD_S = 0.5
LOG_PERIOD_S = 10.0


class Live:
    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        duration_s: float | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.label, self.total, self.duration_s = label, total, duration_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._clock = clock
        self._start = clock()
        self.done = self.errors = self.tokens = 0
        self._recent_ttft: deque[float] = deque(maxlen=RECENT)
        self._drawn = False

    def add(self, sample: Sample) -> None:
        self.done += 1
        if not sample.ok:
            self.errors += 1
            return
        self.tokens += sample.tokens_out
        if sample.ttft is not None:
            self._recent_ttft.append(sample.ttft)

    def line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        if self.total is not None:
            progress = f"{self.done}/{self.total}"
        elif self.duration_s is not None:
            progress = f"{self.done} done, {elapsed:.0f}/{self.duration_s:.0f} s"
        else:
            progress = f"{self.done} done"
        ttft = percentile(list(self._recent_ttft), 50) * 1000 if self._recent_ttft else None
        ttft_text = f"{ttft:.1f} ms" if ttft is not None else "–"
        return (
            f"{self.label}: {progress} · {self.errors} errors · {self.done / elapsed:.1f} req/s"
            f" · {self.tokens / elapsed:.0f} tok/s · TTFT p50 {ttft_text}"
        )

    def draw(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    async def run(self) -> None:
        """Draw periodically until cancelled."""
        period = TTY_PERIOD_S if self.tty else LOG_PERIOD_S
        while True:
            await asyncio.sleep(period)
            self.draw()

    def close(self) -> None:
        """The final line."""
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
        elif self._drawn or self.done:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
