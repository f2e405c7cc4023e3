"""``enclave audit verify | export | prune | resign``: the hash-chained audit log.

``verify`` prints "ok: N records verified" and what the witness check found (exit 0),
names the first broken or missing record (exit 1), or says why the chain could not be
checked against the witness (exit 3; ``--no-witness`` checks the chain alone);
``--witness FILE`` (repeatable) reads those witness files instead of
``audit.witness_file``. ``export --since --until --format jsonl|csv [--output FILE]``
writes records with every column; ``prune [--days N]`` deletes older records through a
signed checkpoint (default: ``audit.retention_days``); ``resign --old-key FILE``
re-signs the chain with a new ``secret.key`` after verifying it with the old one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from enclave.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from enclave.audit.chain import Verdict
    from enclave.audit.rotate import Resigned

T = TypeVar("T")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify, export and prune the audit log",
        description="The hash-chained record of every API call and administrative action.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check the chain and the witness; exit 1 naming the first broken record"
    )
    _witness_options(verify)
    verify.set_defaults(handler=_verify)
    resign = actions.add_parser(
        "resign", help="re-sign the chain with a new secret.key, verified with the old one"
    )
    resign.add_argument(
        "--old-key", type=Path, required=True, metavar="FILE", help="the replaced secret.key"
    )
    _witness_options(resign)
    resign.set_defaults(handler=_resign)
    export = actions.add_parser("export", help="write records as JSON lines or CSV")
    export.add_argument("--since", type=_moment, metavar="ISO", help="from this time (UTC)")
    export.add_argument("--until", type=_moment, metavar="ISO", help="before this time")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: stdout")
    export.set_defaults(handler=_export)
    prune = actions.add_parser(
        "prune", help="delete records older than N days through a signed checkpoint"
    )
    prune.add_argument(
        "--days", type=int, metavar="N", help="default: audit.retention_days of the settings"
    )
    prune.set_defaults(handler=_prune)


def _witness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--witness", type=Path, action="append", metavar="FILE",
        help="a witness file to check against (repeatable: one per replica or from syslog); "
        "default: audit.witness_file",
    )  # fmt: skip
    parser.add_argument(
        "--no-witness", action="store_true",
        help="check the chain alone: a wipe or rollback of the database goes unnoticed",
    )  # fmt: skip


def _witness_files(args: argparse.Namespace, settings: Settings) -> list[Path] | None:
    from enclave.audit.witness import files_to_check
    from enclave.errors import InvalidRequest

    if args.no_witness:
        return None
    for path in args.witness or ():
        if not path.is_file():
            raise InvalidRequest(f"no witness file {path}")
    return files_to_check(settings, args.witness)


def _moment(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.audit.ops import verify_store

    files = _witness_files(args, settings)

    def run(sessions: async_sessionmaker[AsyncSession], key: bytes) -> Awaitable[Verdict]:
        return verify_store(sessions, key, witness=files)

    verdict = _with_store(settings, run)
    if verdict.unanchored:
        print(f"cannot check against the witness: {verdict.reason}")
        print("(`enclave audit verify --no-witness` checks the chain alone)")
        return 3
    if not verdict.ok:
        print(f"broken at {verdict.reason}")
        return 1
    print(f"ok: {verdict.reason}")
    if args.no_witness:
        print("witness: not checked (--no-witness)")
    elif files is None:
        print("witness: off (audit.witness): a wipe or rollback would go unnoticed")
    else:
        print(verdict.witnessed)
    return 0


def _resign(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.audit.rotate import resign
    from enclave.audit.witness import key_id, open_witness
    from enclave.secretkey import read

    old_key = read(args.old_key)
    files = _witness_files(args, settings)

    async def run(sessions: async_sessionmaker[AsyncSession], key: bytes) -> Resigned:
        witness = open_witness(settings, key)
        try:
            return await resign(
                sessions, old_key, key, actor=_os_user(), witness_files=files, witness=witness
            )
        finally:
            if witness is not None:
                await witness.aclose()

    done = _with_store(settings, run)
    print(
        f"re-signed the head and {done.checkpoints} checkpoint(s) of {done.checked} verified "
        f"records: key {key_id(old_key)} -> {key_id(load_key(settings))}; "
        f"audit.resign is record {done.head.seq}"
    )
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.audit.ops import export

    def run(sessions: async_sessionmaker[AsyncSession], key: bytes) -> Awaitable[int]:
        return export(sessions, out, args.since, args.until, args.format)

    if args.output is None:
        out = sys.stdout
        _with_store(settings, run)
        return 0
    with args.output.open("w", encoding="utf-8", newline="") as out:
        count = _with_store(settings, run)
    print(f"exported {count} records to {args.output}", file=sys.stderr)
    return 0


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.audit.ops import prune
    from enclave.errors import InvalidRequest

    days = settings.audit.retention_days if args.days is None else args.days
    if days <= 0:
        raise InvalidRequest(
            "nothing to prune: audit.retention_days is 0 (keep everything); give --days N"
        )
    cutoff = datetime.now(UTC) - timedelta(days=days)

    async def run(sessions: async_sessionmaker[AsyncSession], key: bytes) -> int:
        from enclave.audit.witness import open_witness

        witness = open_witness(settings, key)
        try:
            return await prune(sessions, key, cutoff, actor=_os_user(), witness=witness)
        finally:
            if witness is not None:
                await witness.aclose()

    count = _with_store(settings, run)
    print(f"pruned {count} records older than {cutoff:%Y-%m-%d %H:%M} UTC")
    return 0


def _os_user() -> str | None:
    """Who runs the command, for the ``audit.prune`` record."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _with_store(
    settings: Settings, action: Callable[[async_sessionmaker[AsyncSession], bytes], Awaitable[T]]
) -> T:
    """Open the store and the key, run ``action(sessions, key)``, close the store."""
    key = load_key(settings)

    async def main() -> T:
        from enclave.store.repos import open_store

        store = await open_store(settings.database)
        try:
            return await action(store.sessions, key)
        finally:
            await store.aclose()

    return asyncio.run(main())


def load_key(settings: Settings) -> bytes:
    from enclave.secretkey import load_or_create

    return load_or_create(settings.secret_file)
