"""A run's progress event, from the step that emits it to a WebSocket client.

Target (issue 15): p99 ≤ 50 ms from a step's ``ctx.progress`` to the client.

Set-up: the fake upstream and one ``enclave serve`` (authentication off, the default
SQLite database, ``tasks.concurrency`` = ``--runs``) in a fresh ``ENCLAVE_HOME``. One
``websockets`` client starts ``--runs`` runs of an ad hoc task of one ``sleep`` step of
``--seconds`` seconds (a progress event a second) with ``{"type": "start", ...}`` on one
socket, which subscribes it to each; every ``progress`` event is timed from its ``at``
(stamped when the step emitted it, before it is stored and published) to when the client
has decoded it, on the same machine's clock. Printed: events, p50/p90/p99/max (ms) and
the verdict.

    .venv/bin/python bench/tasks_events.py                  # 60 runs of 5 s: about 300 events
    .venv/bin/python bench/tasks_events.py --runs 20 --seconds 3 --json /tmp/ev.json

Exit status: 0 target met, 1 missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.common import console_script, percentile, warn_if_busy
from bench.servers import own_env, run_fake, serve
from tests.fakes.procs import ProcessFailed, free_port

TARGET_P99_MS = 50.0
TERMINAL = ("succeeded", "failed", "cancelled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="runs at once (default 60)")
    parser.add_argument("--seconds", type=float, default=5, help="each run's sleep (default 5)")
    parser.add_argument("--json", type=Path, help="write the summary and samples here")
    return parser.parse_args(argv)


async def measure(url: str, runs: int, seconds: float) -> list[float]:
    """Latencies (ms) of every progress event of ``runs`` runs followed on one socket."""
    from websockets.asyncio.client import connect

    definition = {"name": "bench-nap", "steps": [
        {"id": "nap", "kind": "sleep", "seconds": seconds, "progress": True}]}  # fmt: skip
    samples: list[float] = []
    open_runs: set[str] = set()
    async with connect(url, max_queue=None) as socket:
        for _ in range(runs):
            await socket.send(json.dumps({"type": "start", "definition": definition}))
        started = 0
        while started < runs or open_runs:
            message = json.loads(await asyncio.wait_for(socket.recv(), 60 + seconds))
            received = time.time()
            kind = message.get("type")
            if kind == "started":
                started += 1
                open_runs.add(message["run"]["id"])
            elif kind == "progress":
                at = datetime.fromisoformat(message["at"].replace("Z", "+00:00")).timestamp()
                samples.append((received - at) * 1000)
            elif kind == "status" and message.get("status") in TERMINAL:
                open_runs.discard(message["run"])
            elif kind == "error" and "id" not in message:
                raise RuntimeError(f"the gateway refused a message: {message['message']}")
    return samples


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="enclave-bench-tasks-") as folder:
        home = Path(folder)
        logs = home / "logs-bench"
        logs.mkdir()
        try:
            with run_fake("fake", tokens=4, itl_ms=0, cpu=None, logs=logs) as fake:
                port = free_port()
                config = {
                    "port": port,
                    "engine": {"enabled": False, "embeddings": False, "ocr": False},
                    "upstreams": [{"name": "fake", "base_url": f"http://127.0.0.1:{fake.port}/v1",
                                   "models": ["fake-model"]}],
                    "tasks": {"concurrency": args.runs, "per_user_running": args.runs,
                              "per_user_queued": args.runs * 2},
                }  # fmt: skip
                path = home / "enclave.yaml"
                path.write_text(yaml.safe_dump(config))
                command = [console_script("enclave"), "--config", str(path), "serve"]
                env = own_env(ENCLAVE_HOME=str(home))
                with serve("gateway", command, port=port, health="/health", env=env, cpu=None,
                           logs=logs, timeout=60):  # fmt: skip
                    url = f"ws://127.0.0.1:{port}/api/tasks/ws"
                    samples = asyncio.run(measure(url, args.runs, args.seconds))
        except (ProcessFailed, OSError, RuntimeError, TimeoutError) as exc:
            print(f"tasks_events: could not run: {exc}", file=sys.stderr)
            return 2
    return report(samples, args)


def report(samples: list[float], args: argparse.Namespace) -> int:
    if not samples:
        print("tasks_events: no progress event arrived", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {
        "runs": args.runs, "seconds": args.seconds, "events": len(samples),
        "p50_ms": percentile(samples, 50), "p90_ms": percentile(samples, 90),
        "p99_ms": percentile(samples, 99), "max_ms": max(samples),
    }  # fmt: skip
    ok = summary["p99_ms"] <= TARGET_P99_MS
    print(f"progress event, step → WebSocket client: {len(samples)} events from "
          f"{args.runs} runs")  # fmt: skip
    print("  p50 {p50_ms:.1f} ms   p90 {p90_ms:.1f} ms   p99 {p99_ms:.1f} ms   "
          "max {max_ms:.1f} ms".format(**summary))  # fmt: skip
    print(f"  target p99 ≤ {TARGET_P99_MS:.0f} ms: {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "samples_ms": samples}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
