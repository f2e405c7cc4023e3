"""``enclave verify``: a deployment's acceptance gates as a ✅/❌ checklist.

Parses arguments and hands off to :mod:`enclave.bench.verify`. Exit status: 0 every
gate passed, 1 a gate failed (or the thresholds file is bad), 2 bad arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from enclave.config import Settings


def add_parser(subparsers: Any) -> None:
    from enclave.cli.bench import add_endpoint_args

    parser = subparsers.add_parser(
        "verify",
        help="acceptance gates of a deployment: pass/fail table and exit code",
        description="Check an OpenAI-compatible deployment against acceptance gates "
        "(health, models, chat, streaming, success rate, single-user P50/P95, throughput at "
        "10 users, clean 4xx on bad input, optional stability run). Thresholds come from "
        "a YAML file (--print-thresholds shows the defaults). Exit 0 if every gate passed.",
    )
    add_endpoint_args(parser)
    parser.add_argument("--model", help="the model expected (default: the first listed)")
    parser.add_argument("--thresholds", type=Path, help="YAML file of thresholds")
    parser.add_argument("--soak", help="also run a stability run this long, e.g. 1h")
    parser.add_argument(
        "--report", type=Path, default=Path("enclave-verify.md"), help="Markdown report file"
    )
    parser.add_argument("--json", type=Path, help="also write the verdict as JSON here")
    parser.add_argument(
        "--print-thresholds", action="store_true", help="print the default thresholds (YAML)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.bench.client import Endpoint
    from enclave.bench.verify import defaults_yaml, load_thresholds, run_verify
    from enclave.cli.bench import api_key, endpoint_url, seconds_arg

    if args.print_thresholds:
        print(defaults_yaml(), end="")
        return 0
    thresholds = load_thresholds(args.thresholds)
    if args.model:
        thresholds = thresholds.model_copy(update={"model": args.model})
    endpoint = Endpoint.parse(
        endpoint_url(args, settings), api_key=api_key(args), insecure=args.insecure
    )
    soak = seconds_arg(args.soak, "--soak") if args.soak else None
    return run_verify(endpoint, thresholds, soak_s=soak, report=args.report, json_path=args.json)
