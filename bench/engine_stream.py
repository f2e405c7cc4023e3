"""Streamed tokens/s and time-to-first-token: through ``enclave serve`` vs the engine itself.

Targets (foundation issue): tokens/s through the gateway >= 95 % of llama.cpp's own
server on the same model and threads, and a time-to-first-token overhead <= 5 ms.

Method: ONE ``enclave serve --parallel 1`` is started; its engine child (llama.cpp's
HTTP server through xllamacpp) listens on a loopback port of its own, read from the
child's command line. Requests then alternate between that port (direct) and the
gateway (through ``enclave``): same process, same model, same threads, same slot and
prompt cache, so the only difference is the gateway hop. Each request is streamed
with temperature 0, a fixed seed and ``ignore_eos`` so that it yields exactly
``--max-tokens`` tokens (checked against ``usage``). Both paths use the same client
code: a raw httpx stream decoded by ``enclave.sse.Decoder``, timed with
``time.perf_counter``.

Run from the repository root (needs a prepared model, see ``enclave models prepare``)::

    ./task bench engine_stream
    .venv/bin/python bench/engine_stream.py --model qwen2.5-coder-1.5b-instruct \\
        --rounds 5 --max-tokens 64 --json /tmp/qwen.json

Exit status: 0 both targets met, 1 a target missed, 2 the benchmark could not run.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/engine_stream.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from bench.common import console_script, percentile, warn_if_busy  # noqa: E402
from enclave.sse import Decoder  # noqa: E402
from tests.fakes.procs import ProcessFailed, free_port, run_process  # noqa: E402

HOST = "127.0.0.1"
TOKENS_RATIO_TARGET = 0.95
TTFT_OVERHEAD_TARGET_MS = 5.0
PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."
DIRECT, GATEWAY = "direct", "gateway"


@dataclass
class Sample:
    path: str
    round: int  # -1 for warm-up requests
    ttft_ms: float  # request sent -> first content delta
    total_ms: float  # request sent -> end of stream
    decode_ms: float  # first content delta -> last content delta
    tokens: int  # usage.completion_tokens
    deltas: int  # content deltas received
    decode_tps: float  # (tokens - 1) / decode time
    e2e_tps: float  # tokens / total time
    server_prompt_ms: float | None  # llama.cpp's own timings.prompt_ms
    server_tps: float | None  # llama.cpp's own timings.predicted_per_second
    server_cache_n: int | None  # prompt tokens llama.cpp took from its cache
    text: str = field(repr=False, default="")


def stream_once(
    client: httpx.Client, url: str, body: dict[str, Any], path: str, rnd: int
) -> Sample:
    """One streamed completion, timed at the client; identical for both paths."""
    decoder = Decoder()
    first = last = None
    deltas = 0
    parts: list[str] = []
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    start = time.perf_counter()
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
        for chunk in response.iter_raw():
            now = time.perf_counter()
            for event in decoder.feed(chunk):
                if event.is_done:
                    continue
                data = event.json()
                if "error" in data:
                    raise RuntimeError(f"{path}: error event: {event.data[:300]}")
                for choice in data.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        first = now if first is None else first
                        last = now
                        deltas += 1
                        parts.append(content)
                usage = data.get("usage") or usage
                timings = data.get("timings") or timings
    end = time.perf_counter()
    if first is None or last is None:
        raise RuntimeError(f"{path}: the stream carried no content")
    tokens = int(usage.get("completion_tokens", 0))
    decode_s = last - first
    return Sample(
        path=path,
        round=rnd,
        ttft_ms=(first - start) * 1e3,
        total_ms=(end - start) * 1e3,
        decode_ms=decode_s * 1e3,
        tokens=tokens,
        deltas=deltas,
        decode_tps=(tokens - 1) / decode_s if decode_s > 0 else float("nan"),
        e2e_tps=tokens / (end - start),
        server_prompt_ms=timings.get("prompt_ms"),
        server_tps=timings.get("predicted_per_second"),
        server_cache_n=timings.get("cache_n"),
        text="".join(parts),
    )


def engine_child(health: dict[str, Any]) -> tuple[int, int, list[str]]:
    """The engine child's pid (from /health), port and arguments (from its command line)."""
    engine = next(u for u in health["upstreams"] if u.get("pid"))
    pid = int(engine["pid"])
    args = subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    return pid, int(args[args.index("--port") + 1]), args


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def summarize(samples: list[Sample]) -> dict[str, Any]:
    measured = [s for s in samples if s.round >= 0]
    by = {p: [s for s in measured if s.path == p] for p in (DIRECT, GATEWAY)}
    out: dict[str, Any] = {}
    for p, rows in by.items():
        ttft = [s.ttft_ms for s in rows]
        server = [s.ttft_ms - s.server_prompt_ms for s in rows if s.server_prompt_ms is not None]
        out[p] = {
            "requests": len(rows),
            "ttft_ms_median": statistics.median(ttft),
            "ttft_ms_p90": percentile(ttft, 90),
            "ttft_minus_server_prompt_ms_median": statistics.median(server) if server else None,
            "decode_tps_median": statistics.median(s.decode_tps for s in rows),
            "decode_tps_p10": percentile([s.decode_tps for s in rows], 10),
            "e2e_tps_median": statistics.median(s.e2e_tps for s in rows),
            "server_tps_median": statistics.median(
                s.server_tps for s in rows if s.server_tps is not None
            )
            if any(s.server_tps is not None for s in rows)
            else None,
            "total_ms_median": statistics.median(s.total_ms for s in rows),
        }
    pairs = {
        rnd: {s.path: s for s in measured if s.round == rnd}
        for rnd in sorted({s.round for s in measured})
    }
    ttft_diff = [r[GATEWAY].ttft_ms - r[DIRECT].ttft_ms for r in pairs.values()]
    tps_ratio = [r[GATEWAY].decode_tps / r[DIRECT].decode_tps for r in pairs.values()]
    d, g = out[DIRECT], out[GATEWAY]
    out["ttft_overhead_ms_of_medians"] = g["ttft_ms_median"] - d["ttft_ms_median"]
    out["ttft_overhead_ms_paired_median"] = statistics.median(ttft_diff)
    if d["ttft_minus_server_prompt_ms_median"] is not None:
        out["ttft_overhead_ms_engine_time_removed"] = (
            g["ttft_minus_server_prompt_ms_median"] - d["ttft_minus_server_prompt_ms_median"]
        )
    out["decode_tps_ratio"] = g["decode_tps_median"] / d["decode_tps_median"]
    out["decode_tps_ratio_paired_median"] = statistics.median(tps_ratio)
    out["e2e_tps_ratio"] = g["e2e_tps_median"] / d["e2e_tps_median"]
    out["tokens_ok"] = all(s.tokens == samples[0].tokens for s in samples)
    out["same_text"] = len({s.text for s in measured}) == 1
    out["pass_tokens_per_s"] = out["decode_tps_ratio"] >= TOKENS_RATIO_TARGET
    out["pass_ttft"] = out["ttft_overhead_ms_paired_median"] <= TTFT_OVERHEAD_TARGET_MS
    return out


def report(summary: dict[str, Any], config: dict[str, Any]) -> None:
    d, g = summary[DIRECT], summary[GATEWAY]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print()
    print(
        f"engine_stream  model={config['model']}  threads={config['threads']}  "
        f"rounds={config['rounds']}  max_tokens={config['max_tokens']}  "
        f"cpus={config['cpus']}"
    )
    rows = [
        ("TTFT median (ms)", d["ttft_ms_median"], g["ttft_ms_median"], "{:.2f}"),
        ("TTFT p90 (ms)", d["ttft_ms_p90"], g["ttft_ms_p90"], "{:.2f}"),
        (
            "TTFT - engine prompt_ms (ms)",
            d["ttft_minus_server_prompt_ms_median"],
            g["ttft_minus_server_prompt_ms_median"],
            "{:.2f}",
        ),
        ("decode tokens/s median", d["decode_tps_median"], g["decode_tps_median"], "{:.1f}"),
        ("decode tokens/s p10", d["decode_tps_p10"], g["decode_tps_p10"], "{:.1f}"),
        ("end-to-end tokens/s median", d["e2e_tps_median"], g["e2e_tps_median"], "{:.1f}"),
        ("engine's own tokens/s median", d["server_tps_median"], g["server_tps_median"], "{:.1f}"),
        ("total time median (ms)", d["total_ms_median"], g["total_ms_median"], "{:.1f}"),
    ]
    print(f"{'':32}{'direct':>12}{'gateway':>12}")
    for name, a, b, fmt in rows:
        sa = fmt.format(a) if a is not None else "-"
        sb = fmt.format(b) if b is not None else "-"
        print(f"{name:32}{sa:>12}{sb:>12}")
    print()
    print(
        f"TTFT overhead: {summary['ttft_overhead_ms_paired_median']:+.2f} ms paired median, "
        f"{summary['ttft_overhead_ms_of_medians']:+.2f} ms median difference"
        + (
            f", {summary['ttft_overhead_ms_engine_time_removed']:+.2f} ms with engine time removed"
            if "ttft_overhead_ms_engine_time_removed" in summary
            else ""
        )
        + f"  (target <= {TTFT_OVERHEAD_TARGET_MS:g} ms)  {verdict(summary['pass_ttft'])}"
    )
    print(
        f"tokens/s gateway/direct: {summary['decode_tps_ratio'] * 100:.1f} % of medians, "
        f"{summary['decode_tps_ratio_paired_median'] * 100:.1f} % paired median, "
        f"end-to-end {summary['e2e_tps_ratio'] * 100:.1f} %  "
        f"(target >= {TOKENS_RATIO_TARGET * 100:g} %)  {verdict(summary['pass_tokens_per_s'])}"
    )
    print(
        f"every request produced {config['max_tokens']} tokens: "
        f"{'yes' if summary['tokens_ok'] else 'NO'}; "
        f"identical text on both paths: {'yes' if summary['same_text'] else 'no'}"
    )


def measure(args: argparse.Namespace, urls: dict[str, str], body: dict[str, Any]) -> list[Sample]:
    """Warm-ups, then interleaved rounds.

    Every request opens a fresh loopback connection (both paths alike, a fraction of a
    millisecond): llama.cpp's server closes a kept-alive connection a few seconds after
    it opened it, without warning, so a request sent on it right after the previous
    stream ended fails with "Server disconnected without sending a response".
    """
    samples: list[Sample] = []
    timeout = httpx.Timeout(600.0)
    fresh = httpx.Limits(max_keepalive_connections=0)
    with (
        httpx.Client(trust_env=False, timeout=timeout, limits=fresh) as direct,
        httpx.Client(trust_env=False, timeout=timeout, limits=fresh) as gateway,
    ):
        clients = {DIRECT: direct, GATEWAY: gateway}
        for _ in range(args.warmup):
            for p in (DIRECT, GATEWAY):
                samples.append(stream_once(clients[p], urls[p], body, p, -1))
        for rnd in range(args.rounds):
            # A/B then B/A: neither path always goes first.
            order = (DIRECT, GATEWAY) if rnd % 2 == 0 else (GATEWAY, DIRECT)
            for p in order:
                try:
                    s = stream_once(clients[p], urls[p], body, p, rnd)
                except httpx.HTTPError as exc:
                    raise RuntimeError(f"round {rnd}, {p}: {exc!r}") from exc
                samples.append(s)
                print(
                    f"  round {rnd:2d} {p:8} ttft {s.ttft_ms:8.2f} ms  "
                    f"decode {s.decode_tps:7.1f} tok/s  tokens {s.tokens}",
                    flush=True,
                )
    return samples


def run(args: argparse.Namespace) -> int:
    port = args.port or free_port()
    cmd = [console_script("enclave"), "serve", "--model", args.model, "--port", str(port)]
    cmd += ["--parallel", "1"]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    gateway_root = f"http://{HOST}:{port}"
    busy = warn_if_busy()
    print(f"starting: {' '.join(cmd)}", flush=True)
    samples: list[Sample] = []
    child_pid = 0
    try:
        with run_process(cmd, health_url=f"{gateway_root}/health", timeout=args.start_timeout):
            with httpx.Client(trust_env=False, timeout=10.0) as client:
                health = client.get(f"{gateway_root}/health").json()
            child_pid, child_port, engine_args = engine_child(health)
            threads = engine_args[engine_args.index("--threads") + 1]
            model = engine_args[engine_args.index("--alias") + 1]
            print(f"gateway {gateway_root}  engine pid {child_pid} port {child_port}", flush=True)
            urls = {
                DIRECT: f"http://{HOST}:{child_port}/v1/chat/completions",
                GATEWAY: f"{gateway_root}/v1/chat/completions",
            }
            body = {
                "model": model,
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": True,
                "stream_options": {"include_usage": True},
                "temperature": 0,
                "seed": args.seed,
                "max_tokens": args.max_tokens,
                "ignore_eos": True,
            }
            samples = measure(args, urls, body)
    finally:
        if child_pid and not wait_gone(child_pid):
            print(f"warning: engine child {child_pid} still running", file=sys.stderr)
    config = {
        "model": model,
        "threads": threads,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "command": " ".join(cmd),
        "cpu_busy_before": busy,
    }
    bad = [s for s in samples if s.tokens != args.max_tokens]
    if bad:
        print(
            f"error: {len(bad)} request(s) did not produce {args.max_tokens} tokens "
            f"(e.g. {bad[0].path}: {bad[0].tokens}); does the engine honour ignore_eos?",
            file=sys.stderr,
        )
        return 2
    summary = summarize(samples)
    report(summary, config)
    if args.json:
        payload = {
            "config": config,
            "summary": summary,
            "samples": [{k: v for k, v in asdict(s).items() if k != "text"} for s in samples],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if summary["pass_ttft"] and summary["pass_tokens_per_s"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="prepared model name")
    parser.add_argument("--rounds", type=int, default=10, help="measured A/B pairs")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up requests per path")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="engine threads (default: its own)")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to be ready")
    parser.add_argument("--json", metavar="FILE", help="write config, summary and samples here")
    args = parser.parse_args()
    if args.rounds < 1 or args.max_tokens < 2:
        parser.error("--rounds must be >= 1 and --max-tokens >= 2")
    try:
        return run(args)
    except (ProcessFailed, TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
