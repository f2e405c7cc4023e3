"""Wall time of ``ask --version``, next to the interpreter's own floor.

Target (foundation issue): ``ask --version`` under 150 ms wall time.

Each command is a fresh process (``subprocess.run``), timed with ``time.perf_counter``
around the whole run: fork/exec, interpreter start, imports, output, exit. The commands
run round-robin (one of each per round) so that they see the same machine state:

- ``ask --version``: the console script of this virtualenv;
- ``python -c pass``: the floor, an interpreter that imports nothing;
- ``python -c "import enclave"``: the package ``ask`` cannot avoid importing;
- ``python -c "import httpx"``: what ``ask`` would pay if it imported httpx up front
  (it imports it lazily, only when a question is asked).

Run from the repository root::

    ./task bench ask_startup
    .venv/bin/python bench/ask_startup.py --runs 30 --json /tmp/ask.json

Exit status: 0 the median of ``ask --version`` is under the target, 1 it is not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/ask_startup.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import console_script, percentile, warn_if_busy  # noqa: E402

TARGET_MS = 150.0


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each command")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs of each first")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    py = sys.executable
    commands = {
        "ask --version": [console_script("ask"), "--version"],
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import enclave'": [py, "-c", "import enclave"],
        "python -c 'import httpx'": [py, "-c", "import httpx"],
    }
    busy = warn_if_busy()
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rnd in range(args.warmup + args.runs):
        for name, cmd in commands.items():
            elapsed = time_once(cmd)
            if rnd >= args.warmup:
                times[name].append(elapsed)

    print(
        f"ask_startup  runs={args.runs} (after {args.warmup} warm-ups)  cpus={os.cpu_count()}  "
        f"python {platform.python_version()}"
    )
    print(f"{'command':30}{'min ms':>10}{'median ms':>11}{'p90 ms':>10}")
    summary: dict[str, dict[str, float]] = {}
    for name, values in times.items():
        row = {
            "min_ms": min(values),
            "median_ms": statistics.median(values),
            "p90_ms": percentile(values, 90),
        }
        summary[name] = row
        print(f"{name:30}{row['min_ms']:>10.1f}{row['median_ms']:>11.1f}{row['p90_ms']:>10.1f}")
    ask = summary["ask --version"]
    floor = summary["python -c pass"]["median_ms"]
    lazy = summary["python -c 'import httpx'"]["median_ms"] - floor
    ok = ask["median_ms"] < TARGET_MS
    print()
    print(f"ask --version above the bare interpreter: {ask['median_ms'] - floor:+.1f} ms (median)")
    print(f"importing httpx up front would add about {lazy:.1f} ms (median)")
    print(
        f"ask --version median {ask['median_ms']:.1f} ms, p90 {ask['p90_ms']:.1f} ms  "
        f"(target < {TARGET_MS:g} ms)  {'PASS' if ok else 'FAIL'}"
    )
    if args.json:
        payload = {
            "config": {
                "runs": args.runs,
                "warmup": args.warmup,
                "cpus": os.cpu_count(),
                "cpu_busy_before": busy,
            },
            "summary": summary,
            "samples_ms": times,
            "pass": ok,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
