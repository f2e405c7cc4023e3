"""``enclave config show``."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from enclave.config import Settings, masked


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="show the effective settings")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the effective settings, secrets masked")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    data = masked(settings)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0
