"""The ``kb_ingest`` step: files into a knowledge base, with progress, each file alone.

Two sources, exactly one per step:

- ``files: [{"name", "spool"}]``: uploads waiting in the spool (:mod:`enclave.knowledge.spool`;
  what ``PUT /api/kb/{name}/documents/{filename}`` makes), each stored under its ``name``
  and removed from the spool once ingested. A spooled file is taken only when its grant
  names this knowledge base, this name and the run's owner.
- ``root`` (a ``tasks.file_roots`` name) and ``glob`` (default ``**/*``): the supported
  files under that folder (hidden ones left out), each stored under its absolute path as
  ``enclave kb add`` does; no absolute glob, no ``..``, no symlink out of the root;
  bounded by ``tasks.limits.max_files`` and ``tasks.limits.max_read_bytes``.
- ``root`` and ``sort: {"<path under root>": "<knowledge base>"}`` (instead of ``kb``):
  each file into its own knowledge base, as a classification step's JSON answer says
  (``sort: "{{ steps.classify.json | tojson }}"``). A path that leaves the root is
  refused; a file whose knowledge base does not exist, or that is not there, fails alone.
  An empty ``sort`` ingests nothing (and needs no administrator).

Every file is parsed in a child process bounded by ``knowledge.ingest`` (and killed when
the run is cancelled). A file that fails is reported in ``errors`` (and a ``log`` event
with ``file`` and ``error``) while the others are ingested; when every file fails, the
step fails. Like the routes that change knowledge bases, it runs only for an owner who
is an administrator (403 otherwise, and always when authentication is off).

The output: ``{"kb", "documents", "chunks", "errors", "added", "updated", "unchanged",
"seconds"}``.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from enclave.errors import EnclaveError, Forbidden, InvalidRequest, NotFound
from enclave.identity import Actor
from enclave.knowledge.sandbox import Stopper
from enclave.tasks import safety
from enclave.tasks.registry import StepKind
from enclave.tasks.runctx import LeaseLost

if TYPE_CHECKING:
    from enclave.knowledge.report import IngestProgress, IngestReport
    from enclave.knowledge.service import KnowledgeBases
    from enclave.tasks.context import RunContext

TEMPLATE_MARKS = ("{{", "{%", "{#")


class SpooledFile(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=300, description="the document's name")
    spool: str = Field(min_length=1, max_length=64, description="the spooled upload's token")


class Options(BaseModel):
    model_config = {"extra": "forbid"}

    kb: str = Field("", max_length=64, description="the knowledge base (unless sort)")
    files: list[SpooledFile] | str = Field(
        default_factory=list, description="spooled uploads, or their JSON (a template such "
        "as '{{ params.files | tojson }}')"
    )  # fmt: skip
    root: str = Field("", max_length=64, description="a tasks.file_roots name")
    glob: str = Field("**/*", min_length=1, max_length=500, description="files under root")
    sort: dict[str, str] | str | None = Field(
        None, description="files under root, each into a knowledge base: {path: kb}, or its "
        "JSON (a template such as '{{ steps.classify.json | tojson }}'); instead of kb"
    )  # fmt: skip

    @field_validator("files", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        if isinstance(value, str) and not any(mark in value for mark in TEMPLATE_MARKS):
            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError("files must be a list of {name, spool} or its JSON") from None
        return value

    @model_validator(mode="after")
    def _kb_or_sort(self) -> Options:
        if not self.kb and self.sort is None:
            raise ValueError("kb is required (or sort)")
        return self

    @field_validator("sort", mode="before")
    @classmethod
    def _sort_json(cls, value: object) -> object:
        if isinstance(value, str) and not any(mark in value for mark in TEMPLATE_MARKS):
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError("sort must be an object {path: kb} or its JSON") from None
        return value


async def run(ctx: RunContext, opts: Options) -> dict[str, Any]:
    if isinstance(opts.files, str):
        raise InvalidRequest("files was not rendered to a list", param="files")
    if opts.sort is not None:
        return await _run_sorted(ctx, opts)
    if bool(opts.files) == bool(opts.root):
        raise InvalidRequest("give either files (spooled uploads) or root", param="files")
    kbs = ctx.knowledge()
    await _may_write(ctx, kbs)
    await kbs.get(opts.kb)  # 404 before any work
    refused: dict[str, str] = {}
    if opts.files:
        files, tokens = _spooled(ctx, kbs, opts), [f.spool for f in opts.files]
    else:
        (files, refused), tokens = await asyncio.to_thread(_under_root, ctx, opts), []
    for source, why in refused.items():
        await _failed(ctx, source, why)
    try:
        report = await _ingest(ctx, kbs, opts.kb, files)
    except (asyncio.CancelledError, LeaseLost):
        raise  # the run was stopped, or its worker lost it: the upload may be tried again
    except Exception:
        if ctx.attempt >= ctx.limits.max_attempts:
            _forget(kbs, tokens)  # no attempt follows (else the spool's sweep removes it)
        raise
    _forget(kbs, tokens)
    return await _outcome(ctx, opts.kb, report, refused)


async def _may_write(ctx: RunContext, kbs: KnowledgeBases) -> None:
    """The rule of the routes that change knowledge bases (``access.kb_writer``): the run's
    owner must be an administrator now; nobody when authentication is off."""
    from enclave.store.repos import UserRepo

    if ctx.owner is None:
        raise Forbidden("changing knowledge bases needs authentication: set auth.mode to on")
    user = await UserRepo(kbs.store).get(ctx.owner)
    if user is None or user.disabled or user.role != "admin":
        raise Forbidden(f"changing knowledge bases is for administrators, not {ctx.owner}")


def _spooled(ctx: RunContext, kbs: KnowledgeBases, opts: Options) -> list[tuple[str, Path]]:
    from enclave.knowledge.service import upload_name

    spool = kbs.spool
    if spool is None:
        raise InvalidRequest("this process has no upload spool", param="files")
    assert isinstance(opts.files, list)
    names = [upload_name(f.name) for f in opts.files]
    if len(set(names)) != len(names):
        raise InvalidRequest("two spooled files have the same name", param="files")
    return [(name, spool.take(f.spool, kb=opts.kb, name=name, owner=ctx.owner))
            for name, f in zip(names, opts.files, strict=True)]  # fmt: skip


def _under_root(ctx: RunContext, opts: Options) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """The supported files ``glob`` matches under the root, and those refused (symlinks
    out of it)."""
    from enclave.knowledge.documents import kind_of

    folder = ctx.settings.file_roots.get(opts.root)
    if folder is None:
        raise InvalidRequest(f"root {opts.root!r} is not one of tasks.file_roots", param="root")
    pattern = PurePath(opts.glob)
    if pattern.is_absolute() or ".." in pattern.parts:
        raise InvalidRequest("glob must be relative, without '..'", param="glob")
    top = folder.resolve()
    found: list[tuple[str, Path]] = []
    refused: dict[str, str] = {}
    for path in sorted(top.glob(opts.glob)):
        relative = path.relative_to(top)
        if any(p.startswith(".") for p in relative.parts) or not kind_of(path.name):
            continue
        real = path.resolve()
        if not real.is_relative_to(top):
            refused[str(path)] = f"{relative}: a symlink out of the root {opts.root!r}: refused"
        elif real.is_file():
            found.append((str(real), real))
    _bounded(ctx, found)
    return found, refused


def _bounded(ctx: RunContext, found: list[tuple[str, Path]]) -> None:
    if len(found) > ctx.limits.max_files:
        raise InvalidRequest(
            f"{len(found)} files match, more than tasks.limits.max_files "
            f"({ctx.limits.max_files})", param="glob",
        )  # fmt: skip
    size = sum(path.stat().st_size for _, path in found)
    if size > ctx.limits.max_read_bytes:
        raise InvalidRequest(
            f"the files that match hold {size} bytes, more than tasks.limits.max_read_bytes "
            f"({int(ctx.limits.max_read_bytes)})", param="glob",
        )  # fmt: skip


async def _ingest(
    ctx: RunContext, kbs: KnowledgeBases, kb: str, files: list[tuple[str, Path]]
) -> IngestReport:
    """Ingest ``files``, a progress event per file and batch; a cancellation kills the
    parse that is running."""

    async def tick(tick: IngestProgress) -> None:
        share = tick.files_done / tick.files_total if tick.files_total else 1.0
        await ctx.progress(
            100 * share,  # not rounded: /api/kb/{name}/jobs reads the files done from it
            f"{PurePath(tick.current).name}: {tick.files_done}/{tick.files_total} files, "
            f"{tick.chunks_done} chunks stored",
        )

    stopper = Stopper()
    actor = Actor(user=ctx.owner, request_id=ctx.run_id)
    await ctx.progress(0.0, f"{len(files)} files to ingest into {kb}")
    try:
        return await kbs.add_files(kb, files, progress=tick, actor=actor, stopper=stopper)
    except BaseException:
        stopper.stop()  # kills a parse still running, whatever stopped us
        raise


async def _failed(ctx: RunContext, source: str, why: str) -> None:
    await ctx.emit("log", level="warning", message=f"skipped {source}: {why}", file=source,
                   error=why)  # fmt: skip


def _forget(kbs: KnowledgeBases, tokens: list[str]) -> None:
    if kbs.spool is not None:
        for token in tokens:
            kbs.spool.remove(token)


async def _outcome(
    ctx: RunContext, kb: str, report: IngestReport, refused: dict[str, str]
) -> dict[str, Any]:
    for source, why in report.failed.items():
        await _failed(ctx, source, why)
    errors = {**refused, **report.failed}
    documents = len(report.added) + len(report.updated) + len(report.unchanged)
    if errors and not documents:
        raise _every_file_failed(errors)
    await ctx.progress(100.0, report.summary())
    return {"kb": kb, "documents": documents, "chunks": report.chunks, "errors": errors,
            "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "seconds": round(report.seconds, 3)}  # fmt: skip


def _every_file_failed(errors: dict[str, str]) -> EnclaveError:
    """Every file failed: one error saying why each did."""
    if len(errors) == 1:
        ((source, why),) = errors.items()
        return InvalidRequest(why if why.startswith(PurePath(source).name) else f"{source}: {why}")
    listed = "; ".join(f"{PurePath(s).name}: {w}" for s, w in errors.items())
    return InvalidRequest(f"none of the {len(errors)} files was ingested: {listed}"[:2000])


# --- sort: each file into the knowledge base a map names ------------------------------

Groups = dict[str, list[tuple[str, Path]]]  # kb → [(path as sort gave it, file)]


async def _run_sorted(ctx: RunContext, opts: Options) -> dict[str, Any]:
    if not isinstance(opts.sort, dict):
        raise InvalidRequest("sort was not rendered to an object", param="sort")
    if opts.files or opts.kb or not opts.root:
        raise InvalidRequest("sort goes with root, not with kb or files", param="sort")
    if not opts.sort:
        return _sorted_outcome({}, {}, {})
    kbs = ctx.knowledge()
    await _may_write(ctx, kbs)
    groups, refused = await asyncio.to_thread(_sort_files, ctx, opts.root, opts.sort)
    for kb in list(groups):
        try:
            await kbs.get(kb)
        except NotFound:
            for relative, _ in groups.pop(kb):
                refused[relative] = f"{relative}: there is no knowledge base {kb!r}"
    for source, why in refused.items():
        await _failed(ctx, source, why)
    reports = {kb: await _ingest_sorted(ctx, kbs, kb, files) for kb, files in groups.items()}
    return _sorted_outcome(reports, refused, {kb: [s for s, _ in f] for kb, f in groups.items()})


def _sort_files(ctx: RunContext, root: str, sort: dict[str, str]) -> tuple[Groups, dict[str, str]]:
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
    _bounded(ctx, [f for files in groups.values() for f in files])
    return dict(groups), refused


async def _ingest_sorted(
    ctx: RunContext, kbs: KnowledgeBases, kb: str, files: list[tuple[str, Path]]
) -> IngestReport:
    sources = [(str(path), path) for _, path in files]  # named as `enclave kb add` names it
    return await _ingest(ctx, kbs, kb, sources)


def _sorted_outcome(
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
        raise _every_file_failed(errors)
    return {"kb": ",".join(sorted_), "documents": documents, "chunks": chunks,
            "errors": errors, "added": added, "updated": updated, "unchanged": unchanged,
            "seconds": round(seconds, 3), "sorted": sorted_}  # fmt: skip


KB_INGEST = StepKind(
    name="kb_ingest",
    description="Ingest spooled uploads, or the files of a file root, into a knowledge base",
    options=Options,
    run=run,
)
