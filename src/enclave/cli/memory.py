"""``enclave memory list|search|add|edit|rm|erase|archive|restore``: the assistants'
memory on this server's database, as the API sees it, each change audited (by ``cli``)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from enclave.cli.accounts import show
from enclave.config import Settings
from enclave.errors import InvalidRequest

if TYPE_CHECKING:
    from enclave.memory.service import MemoryService

T = TypeVar("T")
COLUMNS = ["id", "kind", "text", "source", "updated_at"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("memory", help="assistants' memories of each user")
    commands = parser.add_subparsers(dest="memory_command", metavar="COMMAND", required=True)
    _command(commands, "list", "a user's memories, newest first", _list, json=True)
    search = _command(
        commands, "search", "a user's memories nearest to a query", _search, json=True
    )
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="how many (default 5)")
    add = _command(commands, "add", "remember a fact or preference", _add)
    add.add_argument("text")
    add.add_argument("--kind", choices=("fact", "preference"), default="fact")
    edit = _command(commands, "edit", "change a memory's text", _edit)
    edit.add_argument("id", type=int)
    edit.add_argument("text")
    remove = _command(commands, "rm", "delete memories", _remove)
    remove.add_argument("ids", type=int, nargs="+")
    erase = _command(commands, "erase", "delete everything kept about a user", _erase)
    erase.add_argument("--yes", action="store_true", help="really (required)")
    archive = commands.add_parser("archive", help="archive memories, or run the age policy")
    archive.add_argument("--user", help="with --ids: whose memories")
    archive.add_argument("--ids", type=int, nargs="+", help="these; default: the policy")
    archive.add_argument("--list", action="store_true", help="show what is archived (--user)")
    archive.set_defaults(handler=_archive)
    restore = _command(commands, "restore", "bring archived memories back", _restore)
    restore.add_argument("--ids", type=int, nargs="+", help="these; default: all")


def _command(
    commands: Any, name: str, text: str, handler: Callable[..., int], *, json: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=text)
    parser.add_argument("--user", required=True, help="whose memories")
    if json:
        parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=handler)
    return parser


def with_memory(settings: Settings, work: Callable[[MemoryService], Awaitable[T]]) -> T:
    """Open the store and the service (the bundled embedder), run ``work``, close."""

    async def run() -> T:
        from enclave.cli.accounts import opened
        from enclave.memory.service import MemoryService
        from enclave.vectors.embedding import LocalEmbedder

        async with opened(settings) as (store, audit):
            memory = await MemoryService.open(
                store, LocalEmbedder(), settings.memory, settings.home, audit
            )
            return await work(memory)

    return asyncio.run(run())


def _views(rows: list[Any]) -> list[dict[str, Any]]:
    from enclave.gateway.schemas.memory import MemoryPublic

    return [MemoryPublic.of(row).model_dump() for row in rows]


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(memory: MemoryService) -> list[Any]:
        return await memory.list(args.user, 1000)

    show(_views(with_memory(settings, work)), COLUMNS, args.json)
    return 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.gateway.schemas.memory import MemoryHit

    async def work(memory: MemoryService) -> list[dict[str, Any]]:
        hits = await memory.search(args.user, args.query, args.k, touch=False)
        return [MemoryHit.found(hit).model_dump() for hit in hits]

    show(with_memory(settings, work), ["id", "score", "kind", "text"], args.json)
    return 0


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(memory: MemoryService) -> int:
        row = await memory.add(CLI, args.user, args.text, kind=args.kind, source="cli")
        return row.id

    print(f"memory {with_memory(settings, work)} added for {args.user}")
    return 0


def _edit(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(memory: MemoryService) -> None:
        await memory.edit(CLI, args.user, args.id, args.text)

    with_memory(settings, work)
    print(f"memory {args.id} of {args.user} changed")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(memory: MemoryService) -> None:
        for memory_id in args.ids:
            await memory.delete(CLI, args.user, memory_id)

    with_memory(settings, work)
    print(f"{len(args.ids)} memories of {args.user} deleted")
    return 0


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    if not args.yes:
        raise InvalidRequest(f"this deletes everything kept about {args.user}: add --yes")

    async def work(memory: MemoryService) -> dict[str, int]:
        return await memory.erase(CLI, args.user)

    counts = with_memory(settings, work)
    print(f"erased {args.user}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    if (args.ids or args.list) and not args.user:
        raise InvalidRequest("--ids and --list need --user")

    async def work(memory: MemoryService) -> Any:
        if args.list:
            from enclave.gateway.schemas.memory import ArchivedPublic

            items = await memory.archived(args.user)
            return [ArchivedPublic.of(item).model_dump() for item in items]
        if args.ids:
            return await memory.archive_ids(CLI, args.user, args.ids)
        return await memory.archive_due(CLI)

    done = with_memory(settings, work)
    if args.list:
        show(done, ["id", "kind", "text", "archived_at"], False)
    else:
        print(f"{done} memories archived")
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(memory: MemoryService) -> list[Any]:
        return await memory.restore(CLI, args.user, args.ids)

    rows = with_memory(settings, work)
    print(f"{len(rows)} memories of {args.user} restored")
    return 0
