"""`enclave verify`'s 10-concurrent-users throughput: the engine's old fixed slots against
slots sized from the host, side by side.

Issue 17 §4: the embedded engine had 2 slots and 8,192 tokens of context whatever the
host; now ``engine.parallel`` / ``engine.ctx_size`` default to 0 and are sized from the
cores and memory (:mod:`enclave.engine.sizing`). This starts ``enclave serve --model M``
once per side and round (``ENCLAVE_HOME`` from the environment; prepare the model there
with ``enclave models prepare M``):

- **before**: ``--parallel 2 --ctx-size 8192`` (the old defaults);
- **after**: nothing given (sized; the chosen slots are printed from the engine's command);

and runs ``enclave verify`` against it with every gate but the throughput one cut to one
request (thresholds: 10 concurrent users, ``--requests`` streamed requests of
``max_tokens`` 64, the verify prompt; a request may take 300 s, so that a loaded machine
slows the run rather than failing its requests). Sides alternate A/B, B/A each round; the table
shows each side's req/s per round, the medians and their ratio.

Run from the repository root::

    ENCLAVE_HOME=/tmp/h .venv/bin/python bench/engine_slots.py --model smollm2-135m-instruct
    ENCLAVE_HOME=/tmp/h .venv/bin/python bench/engine_slots.py --quick    # one round, 20 requests
    ENCLAVE_HOME=/tmp/h taskset -c 0,1 .venv/bin/python bench/engine_slots.py \
        --model qwen2.5-coder-1.5b-instruct --rounds 2

Exit status: 0 the sized engine answers at least as many requests/s (ratio ≥ 1.0), 1 not,
2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/engine_slots.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from bench.common import console_script, warn_if_busy  # noqa: E402
from tests.fakes.procs import free_port, run_process  # noqa: E402

SIDES = {"before": ["--parallel", "2", "--ctx-size", "8192"], "after": []}
THRESHOLDS = """\
timeout_s: 300
smoke: {{calls: 1}}
single_user: {{requests: 1}}
bad_input: false
throughput: {{concurrency: 10, requests: {requests}, min_rps: 0}}
"""


def engine_slots(root: str) -> str:
    """The engine child's ``--parallel`` and ``--ctx-size``, from its command line."""
    health = httpx.get(f"{root}/health", timeout=10.0, trust_env=False).json()
    for upstream in health.get("upstreams", []):
        pid = upstream.get("pid")
        if pid:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            parallel = args[args.index("--parallel") + 1]
            return f"{parallel} slots, ctx {args[args.index('--ctx-size') + 1]}"
    return "?"


def one(args: argparse.Namespace, side: str, folder: Path) -> tuple[float, str]:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    cmd = [console_script("enclave"), "serve", "--model", args.model, "--port", str(port)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    with run_process([*cmd, *SIDES[side]], health_url=f"{root}/health", timeout=300):
        slots = engine_slots(root)
        thresholds = folder / "thresholds.yaml"
        thresholds.write_text(THRESHOLDS.format(requests=args.requests))
        out = folder / f"{side}.json"
        subprocess.run(
            [console_script("enclave"), "verify", "--url", root, "--thresholds", str(thresholds),
             "--report", str(folder / "report.md"), "--json", str(out)],
            check=False, capture_output=True,
        )  # fmt: skip
    gates: list[dict[str, Any]] = json.loads(out.read_text())["gates"]
    gate = next(g for g in gates if g["name"].endswith("concurrent users"))
    found = re.match(r"([\d.]+) req/s", gate["measured"])
    if found is None:
        raise SystemExit(f"no throughput in {gate}")
    return float(found.group(1)), slots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50, help="throughput gate requests")
    parser.add_argument("--threads", type=int, help="engine threads, both sides (default: cores)")
    parser.add_argument("--quick", action="store_true", help="one round of 20 requests")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 1, 20
    warn_if_busy()
    rps: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="engine-slots-") as tmp:
        for i in range(args.rounds):
            for side in list(SIDES) if i % 2 == 0 else list(SIDES)[::-1]:
                value, slots = one(args, side, Path(tmp))
                rps[side].append(value)
                print(f"round {i + 1} {side:<6} {slots:<22} {value:.2f} req/s", flush=True)
    before, after = (statistics.median(rps[s]) for s in SIDES)
    print(f"median: before {before:.2f} req/s, after {after:.2f} req/s, "
          f"after/before {after / before:.2f} ({args.model}, 10 concurrent users)")  # fmt: skip
    return 0 if after >= before else 1


if __name__ == "__main__":
    sys.exit(main())
