"""Per-caller backoff: a caller whose own requests keep making a member fail waits.

When an upstream answers a caller's requests with a 5xx ``breaker_failures`` times in a
row and the breaker does not agree that the member is broken (no other caller fails
there, see :mod:`enclave.router.breaker`), that caller may not use the member for
``caller_backoff_s`` (doubling on each further failure, up to a minute); the others go
on using it. A success clears the caller's record. At most ``max_callers`` (caller,
member) records are kept, the least recently failed forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_BACKOFF_S = 60.0


@dataclass(slots=True)
class _Record:
    count: int = 0
    period: float = 0.0
    until: float = 0.0


class Strikes:
    def __init__(
        self,
        threshold: int,
        backoff_s: float,
        max_callers: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.backoff_s = backoff_s
        self.max_callers = max_callers
        self.clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def adopt(self, previous: Strikes) -> None:
        """Keep the records of the router this one replaces (a config reload)."""
        self._records = previous._records
        self.clock = previous.clock

    def failed(self, caller: str, member: str) -> None:
        """``caller``'s request failed on ``member``, and only that caller's do."""
        record = self._records.pop((caller, member), None) or _Record()
        self._records[(caller, member)] = record
        while len(self._records) > self.max_callers:
            self._records.popitem(last=False)
        record.count += 1
        if record.count >= self.threshold:
            record.period = (
                min(record.period * 2, MAX_BACKOFF_S) if record.period else (self.backoff_s)
            )
            record.until = self.clock() + record.period

    def succeeded(self, caller: str, member: str) -> None:
        self._records.pop((caller, member), None)

    def forget(self, member: str) -> None:
        """The member itself is broken (its breaker opened): nobody is to blame."""
        for key in [key for key in self._records if key[1] == member]:
            del self._records[key]

    def wait(self, caller: str, member: str) -> float:
        """Seconds ``caller`` must still wait before using ``member`` (0: it may now)."""
        record = self._records.get((caller, member))
        return max(0.0, record.until - self.clock()) if record else 0.0

    def failures(self, caller: str, member: str) -> int:
        record = self._records.get((caller, member))
        return record.count if record else 0
