"""``kb_ingest`` with ``sort``: the files of a file root, each into the knowledge base a
map names (``{"<path under root>": "<knowledge base>"}``, e.g. a classification step's
JSON answer), one :func:`~enclave.tasks.steps.kb_ingest` pass per knowledge base.

A path is refused when it is absolute, climbs with ``..`` or leaves the root through a
symlink (:func:`enclave.tasks.safety.resolve_under`); a path that is not a file, or whose
knowledge base does not exist, fails alone (``errors`` and a ``log`` warning), like a
file that does not parse. Every file failing fails the step. An empty map ingests nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import EnclaveError, InvalidRequest, NotFound
from enclave.tasks import safety
from enclave.tasks.steps import kb_ingest

if TYPE_CHECKING:
    from enclave.knowledge.report import IngestReport
    from enclave.knowledge.service import KnowledgeBases
    from enclave.tasks.context import RunContext

Groups = dict[str, list[tuple[str, Path]]]  # kb → [(path as sort gave it, file)]


async def run_sorted(ctx: RunContext, opts: kb_ingest.Options) -> dict[str, Any]:
    if not isinstance(opts.sort, dict):
        raise InvalidRequest("sort was not rendered to an object", param="sort")
    if opts.files or opts.kb or not opts.root:
        raise InvalidRequest("sort goes with root, not with kb or files", param="sort")
    if not opts.sort:
        return _outcome({}, {}, {})
    kbs = ctx.knowledge()
    await kb_ingest._may_write(ctx, kbs)
    groups, refused = await asyncio.to_thread(_sorted, ctx, opts.root, opts.sort)
    for kb in list(groups):
        try:
            await kbs.get(kb)
        except NotFound:
            for relative, _ in groups.pop(kb):
                refused[relative] = f"{relative}: there is no knowledge base {kb!r}"
    for source, why in refused.items():
        await kb_ingest._failed(ctx, source, why)
    reports = {kb: await _ingest(ctx, kbs, kb, files) for kb, files in groups.items()}
    return _outcome(reports, refused, {kb: [s for s, _ in f] for kb, f in groups.items()})


def _sorted(ctx: RunContext, root: str, sort: dict[str, str]) -> tuple[Groups, dict[str, str]]:
    folder = ctx.settings.file_roots.get(root)
    if folder is None:
        raise InvalidRequest(f"root {root!r} is not one of tasks.file_roots", param="root")
    groups: Groups = defaultdict(list)
    refused: dict[str, str] = {}
    for relative, kb in sort.items():
        try:
            path = safety.resolve_under(folder, relative, param="sort")
        except EnclaveError as exc:
            refused[relative] = exc.message
            continue
        if not path.is_file():
            refused[relative] = f"{relative}: no such file under the root {root!r}"
        else:
            groups[kb].append((relative, path))
    kb_ingest._bounded(ctx, [f for files in groups.values() for f in files])
    return dict(groups), refused


async def _ingest(
    ctx: RunContext, kbs: KnowledgeBases, kb: str, files: list[tuple[str, Path]]
) -> IngestReport:
    sources = [(str(path), path) for _, path in files]  # named as `enclave kb add` names it
    return await kb_ingest._ingest(ctx, kbs, kb, sources)


def _outcome(
    reports: dict[str, IngestReport], refused: dict[str, str], sorted_: dict[str, list[str]]
) -> dict[str, Any]:
    errors = dict(refused)
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    chunks, seconds = 0, 0.0
    for report in reports.values():
        errors |= report.failed
        added += report.added
        updated += report.updated
        unchanged += report.unchanged
        chunks += report.chunks
        seconds += report.seconds
    documents = len(added) + len(updated) + len(unchanged)
    if errors and not documents:
        raise kb_ingest._every_file_failed(errors)
    return {"kb": ",".join(sorted_), "documents": documents, "chunks": chunks,
            "errors": errors, "added": added, "updated": updated, "unchanged": unchanged,
            "seconds": round(seconds, 3), "sorted": sorted_}  # fmt: skip
