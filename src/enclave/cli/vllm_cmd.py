"""``enclave vllm-command``: the vLLM launch command for a preset, each setting explained."""

from __future__ import annotations

import argparse
import json
from typing import Any

from enclave.config import Settings
from enclave.errors import InvalidRequest


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "vllm-command",
        help="print the vLLM launch command for a preset, and enclave's upstream entry",
        description="Print a `vllm serve` command for an air-gapped GPU host (local weights, "
        "no telemetry), each setting explained, and the upstream entry for enclave's settings.",
    )
    parser.add_argument("--preset", metavar="NAME", help="the deployment (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets")
    parser.add_argument(
        "--model-path", metavar="DIR", help="local directory with the weights (/models/<repo>)"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address vLLM listens on")  # noqa: S104
    parser.add_argument("--port", type=_port, default=8000, help="vLLM's port (default 8000)")
    parser.add_argument("--served-model-name", metavar="NAME", help="public model name")
    parser.add_argument("--tp", type=_positive, metavar="N", help="tensor-parallel GPUs")
    parser.add_argument(
        "--max-num-seqs", type=_positive, metavar="N", help="requests batched together"
    )
    parser.add_argument(
        "--api-key",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="require the key in $VLLM_API_KEY (default: yes)",
    )
    parser.add_argument(
        "--ngram-speculation",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add n-gram speculative decoding (--speculative-config; faster code edits at low "
        "load, explained with the command; default: no)",
    )
    parser.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="explain every setting after the command (default: yes)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.deploy import presets

    if args.list:
        print(presets.preset_table())
        return 0
    if not args.preset:
        known = ", ".join(sorted(presets.PRESETS))
        raise InvalidRequest(f"give --preset NAME or --list; known presets: {known}")
    launch = presets.build(
        presets.get_preset(args.preset),
        model_path=args.model_path,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        tp=args.tp,
        max_num_seqs=args.max_num_seqs,
        api_key=args.api_key,
        ngram_speculation=args.ngram_speculation,
    )
    if args.json:
        print(json.dumps(presets.to_json(launch), indent=2, ensure_ascii=False))
        return 0
    print(presets.title(launch))
    print(presets.shell_command(launch))
    if args.explain:
        print()
        print(presets.explanation(launch))
    print()
    host = presets.PLACEHOLDER_HOST
    print(f"# for enclave's settings file ({host}: this GPU host, as the gateway reaches it)")
    print(presets.upstream_yaml(launch.upstream), end="")
    return 0


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _port(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
