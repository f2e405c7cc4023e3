"""A circuit breaker per pool member: closed → open → half-open → closed.

Consecutive failures open it (the member is ejected); when the open period has run
out, or active checks see the member come back, one trial request goes through
(half-open). The trial's success closes it; its failure opens it again for twice as long.
The clock is injected so tests can step time.

A failure may name the caller whose request it was (an upstream that *answered* with a
5xx: something in that request may be what breaks it). Such failures eject the member
only when those within ``window_s`` come from at least ``callers`` distinct callers: one
caller's poison requests must not take the member away from everyone (that caller is
slowed down instead, see :mod:`enclave.router.strikes`). A failure naming no caller (no
answer at all: refused, timed out, broke off; or a call of the gateway's own) counts
against the member as it always did.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]

MAX_OPEN_S = 60.0
KEPT_FAILURES = 64  # the newest failures remembered for counting distinct callers


class Breaker:
    def __init__(
        self,
        failures: int,
        open_s: float,
        *,
        callers: int = 1,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.base_open_s = open_s
        self.callers = callers  # distinct callers whose failures it takes to eject
        self.window_s = window_s
        self.clock = clock
        self.recent: deque[tuple[float, str | None]] = deque(maxlen=KEPT_FAILURES)
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
        self.recent.clear()

    def failure(self, caller: str | None = None) -> bool:
        """A failure, of the member's own (``caller`` None) or on ``caller``'s request.

        True when it counts against the member: it names no caller, or the failures in
        the window come from enough distinct callers; False when it is, so far, that
        one caller's alone (the member is not ejected for it)."""
        self.failures += 1
        now = self.clock()
        self.recent.append((now, caller))
        while self.recent and now - self.recent[0][0] > self.window_s:
            self.recent.popleft()
        shared = self.shared()
        if self.state == "half_open":
            if not shared:
                self.trial = False  # the trial proved nothing about the member
                return False
            self.open_s = min(self.open_s * 2, MAX_OPEN_S)
            self._open()
        elif self.state == "closed" and self.failures >= self.threshold and shared:
            self._open()
        return shared

    def shared(self) -> bool:
        """Whether the failures in the window are the member's, not one caller's."""
        callers = {caller for _, caller in self.recent}
        return None in callers or len(callers) >= self.callers

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
