"""A tiny progress bar on stderr, without dependencies.

On a terminal it redraws one line with ``\\r`` (at most ten times a second); otherwise
(logs, CI) it prints a plain line every 10 %.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

MB = 1_000_000


class ProgressBar:
    """Callable as ``bar(done, total)`` in bytes; use as a context manager."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 30,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._clock = clock
        self._width = width
        self._start = clock()
        self._last_draw = float("-inf")
        self._last_step = -1
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            self._redraw(done, total)
        else:
            self._log(done, total)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the redrawn line, if any."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def line(self, done: int, total: int) -> str:
        """The text of the bar: label, percent, MB done/total, rate."""
        fraction = done / total if total else 1.0
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = done / MB / elapsed
        return (
            f"{self.label} {fraction:6.1%} {done / MB:,.0f}/{total / MB:,.0f} MB {rate:,.0f} MB/s"
        )

    def _redraw(self, done: int, total: int) -> None:
        now = self._clock()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        filled = int(self._width * done / total) if total else self._width
        bar = "#" * filled + "-" * (self._width - filled)
        self.stream.write(f"\r[{bar}] {self.line(done, total)}")
        self.stream.flush()
        self._drawn = True

    def _log(self, done: int, total: int) -> None:
        step = 10 * done // total if total else 10
        if step == self._last_step:
            return
        self._last_step = step
        self.stream.write(self.line(done, total) + "\n")
        self.stream.flush()
