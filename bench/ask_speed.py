"""How immediate ``ask`` feels: start-up, REPL start, and how soon a streamed chunk is on
the screen. All three in one run, each next to a floor measured the same way.

Targets (the ``ask`` issue): ``ask --version`` ≤ 120 ms and REPL start ≤ 300 ms wall
time; a streamed chunk painted within 20 ms of arriving.

1. ``ask --version``, a fresh process each time, next to ``python -c pass``.
2. REPL start: ``ask`` in a pseudo-terminal, from spawn until ``User >`` is on it (the
   bench answers the cursor-position queries a terminal would), next to a bare
   prompt_toolkit prompt started the same way.
3. Paint latency: a small SSE server here sends chunks 40 ms apart, each carrying a
   marker, and notes when it wrote each one (``time.monotonic``, the same clock in every
   process). ``ask`` runs in a pseudo-terminal and the bench notes when each marker shows
   up on it. The answer mixes prose and a fenced Python block, so Markdown styling and
   code highlighting are in the path. Next to it: ``ask --raw`` and the floor, a plain
   ``http.client`` reader that writes each chunk to the same kind of terminal.

Run from the repository root::

    ./task bench ask_speed
    .venv/bin/python bench/ask_speed.py --runs 20 --json /tmp/ask_speed.json

Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pty
import re
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import console_script, percentile, warn_if_busy  # noqa: E402

VERSION_TARGET_MS = 120.0
REPL_TARGET_MS = 300.0
PAINT_TARGET_MS = 20.0
GAP_S = 0.04
CPR_QUERY = b"\x1b[6n"

ANSWER_LINES = [
    "# Why the build failed\n",
    "\n",
    "The **linker** could not find `libssl` M00 so the step M01 stopped.\n",
    "- check the package M02\n",
    "\n",
    "```python\n",
    "def check(path: str) -> bool:  # M03\n",
    '    """Is the library there? M04"""\n',
    "    return os.path.exists(path)  # M05\n",
    "```\n",
    "Then run it again M06 and M07 it works.\n",
]


def pieces() -> list[str]:
    """The answer cut into chunks of about three words; markers stay whole."""
    words: list[str] = []
    for line in ANSWER_LINES:
        current = ""
        for part in line.split(" "):
            current = f"{current} {part}" if current else part
            if len(current) > 12:
                words.append(current + ("" if current.endswith("\n") else " "))
                current = ""
        if current:
            words.append(current)
    return words


# --- 1 and 2: start-up ---------------------------------------------------------------------


def time_version(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1e3


def in_pty(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    return process, master


def read_until(master: int, wanted: bytes, timeout: float = 10.0) -> float:
    """Seconds until ``wanted`` appears on the terminal, answering cursor queries."""
    seen = b""
    start = time.perf_counter()
    while wanted not in seen:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{wanted!r} did not appear; got {seen[-300:]!r}")
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            data = os.read(master, 65536)
            if CPR_QUERY in data:
                os.write(master, b"\x1b[1;1R")
            seen += data
    return time.perf_counter() - start


def time_prompt(cmd: list[str], env: dict[str, str], wanted: bytes) -> float:
    start = time.perf_counter()
    process, master = in_pty(cmd, env)
    try:
        read_until(master, wanted)
        return (time.perf_counter() - start) * 1e3
    finally:
        process.kill()
        process.wait()
        os.close(master)


BARE_PROMPT = "from prompt_toolkit import PromptSession; PromptSession().prompt('User > ')"


# --- 3: paint latency ---------------------------------------------------------------------


class ChunkServer:
    """``POST /v1/chat/completions``: the answer as SSE chunks ``GAP_S`` apart; the time
    each chunk was written is kept in ``sent`` (one list per request)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, float]] = []
        self.port = 0
        self._ready = threading.Event()

    def start(self) -> None:
        threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True).start()
        self._ready.wait(10)

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )
        times: dict[str, float] = {}
        self.sent.append(times)
        await asyncio.sleep(GAP_S)
        for piece in pieces():
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await writer.drain()
            for marker in re.findall(r"M0\d", piece):
                times[marker] = time.monotonic()
            await asyncio.sleep(GAP_S)
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        writer.close()


def seen_times(master: int, markers: list[str], timeout: float = 10.0) -> dict[str, float]:
    """When each marker first shows up on the terminal (``time.monotonic``)."""
    seen: dict[str, float] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    while len(seen) < len(markers) and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        now = time.monotonic()
        buffer += data
        for marker in markers:
            if marker not in seen and marker.encode() in buffer:
                seen[marker] = now
    return seen


def paint_latencies(cmd: list[str], env: dict[str, str], server: ChunkServer) -> list[float]:
    markers = [f"M0{i}" for i in range(8)]
    process, master = in_pty(cmd, env)
    try:
        seen = seen_times(master, markers)
    finally:
        process.wait(timeout=10)
        os.close(master)
    sent = server.sent[-1]
    missing = [m for m in markers if m not in seen]
    if missing:
        raise RuntimeError(f"markers never shown: {missing}")
    return [(seen[m] - sent[m]) * 1e3 for m in markers]


FLOOR_READER = """
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = json.dumps({"model": "m", "messages": [], "stream": True})
conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
response = conn.getresponse()
while line := response.readline():
    if line.startswith(b"data: {"):
        piece = json.loads(line[6:])["choices"][0]["delta"]["content"]
        sys.stdout.write(piece)
        sys.stdout.flush()
"""


# --- the run -------------------------------------------------------------------------------


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(values),
        "p95_ms": percentile(values, 95),
        "max_ms": max(values),
    }


def row(name: str, stats: dict[str, float]) -> str:
    return f"{name:44}{stats['median_ms']:>10.1f}{stats['p95_ms']:>10.1f}{stats['max_ms']:>10.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs of each")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    busy = warn_if_busy()
    ask = console_script("ask")
    home = Path(tempfile.mkdtemp(prefix="ask-speed-"))
    server = ChunkServer()
    server.start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "ENCLAVE_URL": f"http://127.0.0.1:{server.port}",
        "ENCLAVE_MODEL": "m",
        "ASK_CONFIG": str(home / "none.toml"),
        "ASK_HISTORY": str(home / "ask.db"),
        "COLUMNS": "100",
    }
    py = sys.executable
    measures: dict[str, Callable[[], float]] = {
        "ask --version": lambda: time_version([ask, "--version"]),
        "python -c pass": lambda: time_version([py, "-c", "pass"]),
        "ask (REPL) until `User >` shows": lambda: time_prompt([ask], env, b"User >"),
        "bare prompt_toolkit prompt": lambda: time_prompt([py, "-c", BARE_PROMPT], env, b"User >"),
    }
    samples: dict[str, list[float]] = {name: [] for name in measures}
    paints: dict[str, list[float]] = {
        "ask (Markdown on a terminal)": [],
        "ask --raw": [],
        "floor: http.client reader": [],
    }
    commands = {
        "ask (Markdown on a terminal)": [ask, "--no-history", "why?"],
        "ask --raw": [ask, "--no-history", "--raw", "why?"],
        "floor: http.client reader": [py, "-c", FLOOR_READER, str(server.port)],
    }
    for run in range(args.warmup + args.runs):
        for name, measure in measures.items():
            value = measure()
            if run >= args.warmup:
                samples[name].append(value)
        for name, cmd in commands.items():
            values = paint_latencies(cmd, env, server)
            if run >= args.warmup:
                paints[name] += values

    print(
        f"ask_speed  runs={args.runs} (after {args.warmup} warm-ups)  cpus={os.cpu_count()}  "
        f"python {platform.python_version()}"
    )
    print(f"{'wall time of':44}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
    summary = {name: summarize(values) for name, values in samples.items()}
    for name, stats in summary.items():
        print(row(name, stats))
    print()
    print(f"{'chunk written → on the terminal':44}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
    paint_summary = {name: summarize(values) for name, values in paints.items()}
    for name, stats in paint_summary.items():
        print(row(name, stats))

    version = summary["ask --version"]["median_ms"]
    repl = summary["ask (REPL) until `User >` shows"]["median_ms"]
    paint = paint_summary["ask (Markdown on a terminal)"]["p95_ms"]
    floor = paint_summary["floor: http.client reader"]["p95_ms"]
    checks = {
        f"ask --version median {version:.1f} ms ≤ {VERSION_TARGET_MS:g} ms": version
        <= VERSION_TARGET_MS,
        f"REPL start median {repl:.1f} ms ≤ {REPL_TARGET_MS:g} ms": repl <= REPL_TARGET_MS,
        f"chunk painted p95 {paint:.2f} ms ≤ {PAINT_TARGET_MS:g} ms "
        f"(floor p95 {floor:.2f} ms)": paint <= PAINT_TARGET_MS,
    }
    print()
    for text, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if args.json:
        payload = {
            "config": {"runs": args.runs, "warmup": args.warmup, "cpu_busy_before": busy},
            "startup": summary,
            "paint": paint_summary,
            "samples_ms": {**samples, **paints},
            "pass": all(checks.values()),
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
