"""``enclave bench``: load-test any OpenAI-compatible endpoint; ``enclave bench compare``.

Parses arguments and hands off to :mod:`enclave.bench.session` (and
:mod:`enclave.bench.compare`); every bench module is imported inside the handlers, so
``enclave --help`` stays fast. See docs/bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.config import Settings

if TYPE_CHECKING:
    from enclave.bench.runner import Load

URL_HELP = "the server's root or /v1 URL (default: $ENCLAVE_URL, else this gateway's address)"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="load-test an OpenAI-compatible endpoint (vLLM, enclave...)",
        description="Load-test any OpenAI-compatible chat endpoint: TTFT, inter-token "
        "latency, TPOT, end-to-end latency, throughput, goodput, errors by type, per "
        "concurrency level, with JSON/CSV/Markdown/HTML reports and charts. "
        "`enclave bench compare A.json B.json` puts two runs side by side.",
    )
    add_endpoint_args(parser)
    parser.add_argument("--model", help="the model name to request (required)")
    _workload_args(parser.add_argument_group("workload"))
    _load_args(parser.add_argument_group("load"))
    _output_args(parser.add_argument_group("output"))
    parser.set_defaults(handler=_run)
    sub = parser.add_subparsers(dest="bench_command", metavar="{compare}")
    compare = sub.add_parser(
        "compare",
        help="two bench.json results side by side",
        description="Compare two bench.json files level by level: A, B, difference, change.",
    )
    compare.add_argument("a", type=Path, help="bench.json of run A")
    compare.add_argument("b", type=Path, help="bench.json of run B")
    compare.add_argument("--markdown", action="store_true", help="print a Markdown table")
    compare.set_defaults(handler=_compare)


def add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=URL_HELP)
    parser.add_argument("--api-key", help="bearer key (default: $ENCLAVE_API_KEY)")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")


def _workload_args(group: Any) -> None:
    group.add_argument("--prompt", action="append", help="a fixed prompt (repeat for several)")
    group.add_argument("--input-len", type=int, help="synthetic prompts of about N tokens")
    group.add_argument("--lang", choices=("en", "zh"), default="en", help="synthetic language")
    group.add_argument("--dataset", type=Path, help="JSONL of prompts or conversations")
    group.add_argument("--image", action="append", type=Path, help="an image to send (repeat)")
    group.add_argument("--image-size", help="synthetic images of WIDTHxHEIGHT, e.g. 512x512")
    group.add_argument("--images-per-request", type=int, default=1)
    group.add_argument("--max-tokens", type=int, default=128, help="output tokens (128)")
    group.add_argument("--ignore-eos", action="store_true", help="vLLM: always max_tokens")
    group.add_argument("--extra-body", help="JSON object merged into every request")
    group.add_argument("--no-stream", action="store_true", help="not streamed (no TTFT/ITL)")


def _load_args(group: Any) -> None:
    group.add_argument("--concurrency", default="1", help="a level or a sweep: 1,5,10,20")
    group.add_argument("--requests", type=int, help="requests per level (default 10×c, ≥ 50)")
    group.add_argument("--duration", help="time per level instead: 90s, 10m, 1h (soak)")
    group.add_argument("--rate", type=float, help="requests/s (default: as fast as allowed)")
    group.add_argument("--poisson", action="store_true", help="Poisson arrivals at --rate")
    group.add_argument("--ramp-up", default="0", help="time to reach full load, e.g. 30s")
    group.add_argument("--warmup", default="0", help="warm-up requests (20) or time (10s)")
    group.add_argument("--timeout", default="300s", help="per request (300s)")
    group.add_argument("--seed", type=int, default=0)


def _output_args(group: Any) -> None:
    group.add_argument("--goodput", "--slo", nargs="+", default=[], metavar="NAME:MS",
                       help="SLOs for goodput, e.g. ttft:500 tpot:50 e2el:5000")  # fmt: skip
    group.add_argument("--interval", help="time-series window (default: about 60 windows)")
    group.add_argument("--out", type=Path, help="report directory (./enclave-bench-TIME)")
    group.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    group.add_argument("--quiet", action="store_true", help="no live progress")
    group.add_argument("--server-pid", type=int, help="the server's process (local servers)")
    group.add_argument("--no-sysmon", action="store_true", help="no server CPU/memory/GPU")
    group.add_argument("--no-preflight", action="store_true", help="skip the first check call")


def endpoint_url(args: argparse.Namespace, settings: Settings) -> str:
    from enclave.cli.upstreams import local_url

    url: str = args.url or os.environ.get("ENCLAVE_URL") or local_url(settings)
    return url


def api_key(args: argparse.Namespace) -> str | None:
    key: str | None = args.api_key or os.environ.get("ENCLAVE_API_KEY") or None
    return key


def seconds_arg(text: str, what: str) -> float:
    from enclave.durations import parse_duration
    from enclave.errors import InvalidRequest

    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        raise InvalidRequest(f"bad {what} {text!r}: use e.g. 30, 30s, 10m or 1h") from None


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    from enclave.errors import InvalidRequest

    extra: dict[str, Any] = {}
    if args.extra_body:
        try:
            extra = json.loads(args.extra_body)
        except ValueError as exc:
            raise InvalidRequest(f"--extra-body is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise InvalidRequest("--extra-body must be a JSON object")
    if args.ignore_eos:
        extra["ignore_eos"] = True
    return extra


def _loads(args: argparse.Namespace) -> tuple[Load, ...]:
    from enclave.bench.runner import Load, parse_levels, parse_warmup
    from enclave.bench.session import levels_of
    from enclave.errors import InvalidRequest

    levels = parse_levels(args.concurrency)
    if args.requests is not None and args.duration is not None:
        raise InvalidRequest("give --requests or --duration, not both")
    duration = seconds_arg(args.duration, "--duration") if args.duration else None
    ramp = seconds_arg(args.ramp_up, "--ramp-up") if args.ramp_up not in ("0", "0s") else 0.0
    warm_n, warm_s = parse_warmup(args.warmup)
    loads: list[Load] = []
    for level in levels:
        count = None if duration else (args.requests or max(50, 10 * level))
        base = Load(
            concurrency=level, requests=count, duration_s=duration, rate=args.rate,
            poisson=args.poisson, ramp_up_s=ramp, warmup_requests=warm_n, warmup_s=warm_s,
            seed=args.seed,
        )  # fmt: skip
        loads += levels_of([level], base)
    return tuple(loads)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.bench.metrics import parse_slo
    from enclave.bench.runner import Request
    from enclave.bench.session import BenchOptions, WorkloadSpec, run_bench
    from enclave.bench.workloads import parse_size
    from enclave.errors import InvalidRequest

    if not args.model:
        raise InvalidRequest("--model is required (the name the server serves)")
    if args.poisson and args.rate is None:
        raise InvalidRequest("--poisson needs --rate")
    spec = WorkloadSpec(
        prompts=tuple(args.prompt or ()), input_len=args.input_len, lang=args.lang,
        dataset=args.dataset, images=tuple(args.image or ()),
        image_size=parse_size(args.image_size) if args.image_size else None,
        images_per_request=args.images_per_request,
    )  # fmt: skip
    request = Request(args.model, args.max_tokens, not args.no_stream, _extra(args))
    options = BenchOptions(
        url=endpoint_url(args, settings), model=args.model, api_key=api_key(args),
        insecure=args.insecure, workload=spec, request=request, loads=_loads(args),
        timeout_s=seconds_arg(args.timeout, "--timeout"),
        interval_s=seconds_arg(args.interval, "--interval") if args.interval else None,
        slo=parse_slo(args.goodput), server_pid=args.server_pid, sysmon=not args.no_sysmon,
        quiet=args.quiet, preflight=not args.no_preflight, charts=not args.no_charts,
    )  # fmt: skip
    out = args.out or Path(f"enclave-bench-{datetime.now():%Y%m%d-%H%M%S}")
    return run_bench(options, out)


def _compare(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.bench.compare import render

    print(render(args.a, args.b, markdown=args.markdown))
    return 0
