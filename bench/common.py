"""Helpers shared by the benchmarks: percentiles, a busy-machine warning, console scripts."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (Linux /proc/stat), before we start."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def warn_if_busy() -> float | None:
    busy = cpu_busy()
    if busy is not None and busy > 0.15:
        print(
            f"warning: the machine is {busy:.0%} busy before the benchmark starts; "
            "numbers will be noisy (other benchmarks, tests or engines running?)",
            file=sys.stderr,
            flush=True,
        )
    return busy


def console_script(name: str) -> str:
    """``enclave`` or ``ask`` from the virtualenv running this script, else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"`{name}` not found: run from the project's virtualenv")
    return found
