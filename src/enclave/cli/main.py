"""``enclave``: serve, config, models, upstreams, vllm-command, bundle, users, keys, audit, kb,
memory, tasks, schedules, bench, verify.

Each command group lives in its own module with ``add_parser(subparsers)``; a parser
sets ``handler(args, settings) -> int``. Errors from :mod:`enclave.errors` (and OS
errors: a file that cannot be read or written) become one line on stderr and exit code 1;
nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from enclave import __version__

GROUPS = (
    "enclave.cli.serve",
    "enclave.cli.config_cmd",
    "enclave.cli.models",
    "enclave.cli.vllm_cmd",
    "enclave.cli.bundle",
    "enclave.cli.upstreams",
    "enclave.cli.users",
    "enclave.cli.keys",
    "enclave.cli.audit",
    "enclave.cli.kb",
    "enclave.cli.memory",
    "enclave.cli.tasks",
    "enclave.cli.schedules",
    "enclave.cli.bench",
    "enclave.cli.verify",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="enclave",
        description="Private AI gateway and embedded engine for air-gapped networks.",
    )
    parser.add_argument("--version", action="version", version=f"enclave {__version__}")
    parser.add_argument("--config", type=Path, help="YAML settings file (or ENCLAVE_CONFIG)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in GROUPS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from enclave.errors import EnclaveError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from enclave.config import load_settings

        settings = load_settings(args.config)
        code: int = args.handler(args, settings)
    except EnclaveError as exc:
        print(f"enclave: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file named on the command line, unreadable or unwritable
        where = f": {exc.filename}" if exc.filename else ""
        print(f"enclave: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("enclave: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
