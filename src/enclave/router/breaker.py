"""A circuit breaker per pool member: closed → open → half-open → closed.

Consecutive failures open it (the member is ejected); when the open period has run
out, or active checks see the member come back, one trial request goes through
(half-open). The trial's success closes it; its failure opens it again for twice as long.
The clock is injected so tests can step time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]

MAX_OPEN_S = 60.0


class Breaker:
    def __init__(
        self, failures: int, open_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.base_open_s = open_s
        self.clock = clock
        self.state: State = "closed"
        self.failures = 0
        self.open_s = open_s
        self.opened_at = 0.0
        self.trial = False  # a half-open trial request is in flight

    def usable(self) -> bool:
        """Whether a request may be sent now (without taking the half-open trial)."""
        if self.state == "open" and self.clock() - self.opened_at >= self.open_s:
            self.state = "half_open"
        return self.state == "closed" or (self.state == "half_open" and not self.trial)

    def current(self) -> State:
        self.usable()
        return self.state

    def dispatched(self) -> None:
        """A request was sent; in half-open state it is the one trial."""
        if self.state == "half_open":
            self.trial = True

    def success(self) -> None:
        self.state, self.failures, self.trial = "closed", 0, False
        self.open_s = self.base_open_s

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open":
            self.open_s = min(self.open_s * 2, MAX_OPEN_S)
            self._open()
        elif self.state == "closed" and self.failures >= self.threshold:
            self._open()

    def recovered(self) -> None:
        """Active checks saw the member come back: let a trial through without waiting."""
        if self.state == "open":
            self.state, self.trial = "half_open", False

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.open_s - (self.clock() - self.opened_at))

    def _open(self) -> None:
        self.state, self.trial = "open", False
        self.opened_at = self.clock()
