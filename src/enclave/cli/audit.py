"""``enclave audit verify | export | prune``: the hash-chained audit log.

``verify`` prints "ok: N records verified" (exit 0) or names the first broken record
(exit 1); ``export --since --until --format jsonl|csv [--output FILE]`` writes records
with every column; ``prune [--days N]`` deletes older records through a signed
checkpoint (default: ``audit.retention_days``).
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

T = TypeVar("T")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify, export and prune the audit log",
        description="The hash-chained record of every API call and administrative action.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check the chain; exit 1 naming the first broken record"
    )
    verify.set_defaults(handler=_verify)
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


def _moment(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.audit.ops import verify_store

    verdict = _with_store(settings, verify_store)
    if verdict.ok:
        print(f"ok: {verdict.reason}")
        return 0
    print(f"broken at {verdict.reason}")
    return 1


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

    def run(sessions: async_sessionmaker[AsyncSession], key: bytes) -> Awaitable[int]:
        return prune(sessions, key, cutoff, actor=_os_user())

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
    from enclave.secretkey import load_or_create

    key = load_or_create(settings.secret_file)

    async def main() -> T:
        from enclave.store.repos import open_store

        store = await open_store(settings.database)
        try:
            return await action(store.sessions, key)
        finally:
            await store.aclose()

    return asyncio.run(main())
