"""The one duration parser: ``90``, ``90s``, ``15m``, ``1.5h``, ``30d`` → a timedelta.

Standard library only (lowest layer): key expiry (``auth``) and the benchmark's
durations (``bench``) both read durations through :func:`parse_duration`, each with
the forms it accepts.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WHOLE = re.compile(r"[1-9][0-9]{0,6}")


def parse_duration(
    text: str, *, units: str = "smh", bare: bool = True, whole: bool = False
) -> timedelta:
    """A positive duration, or ValueError.

    ``units``: the unit letters accepted (of s, m, h, d); ``bare``: whether a number
    without a unit is accepted (as seconds); ``whole``: whole numbers only (1 to 7 digits).
    """
    spec = text.strip().lower()
    unit = spec[-1:] if spec[-1:].isalpha() else ""
    number = spec[:-1] if unit else spec
    if unit not in units or unit not in SECONDS if unit else not bare:
        raise ValueError(f"{text!r} is not a duration: use {', '.join(units)}")
    if whole and _WHOLE.fullmatch(number) is None:
        raise ValueError(f"{text!r} is not a whole number of {units}")
    try:
        value = float(number) * SECONDS[unit or "s"]
    except ValueError:
        raise ValueError(f"{text!r} is not a duration") from None
    if not 0 < value < math.inf:
        raise ValueError(f"{text!r} is not a positive duration")
    try:
        return timedelta(seconds=value)
    except OverflowError:  # 1e300s: past what a timedelta holds (about 2.7 million years)
        raise ValueError(f"{text!r} is too long a duration") from None
