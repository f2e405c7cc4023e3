"""``/api/admin/audit``: the audit log for the admin console: filtered pages (keyset on
``seq``, newest first), one record whole, verify, and a streamed export.

Verify runs what ``enclave audit verify`` runs (:func:`enclave.audit.ops.verify_store`
and the witness files of ``audit.witness``) in a worker thread on a connection of its
own, so the gateway's event loop keeps serving meanwhile; one verify at a time (a second
one while it runs is a 409). Verify and export are themselves recorded
(``audit.verify``, ``audit.export``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import make_url

from enclave.audit.chain import Verdict, iso_utc
from enclave.audit.query import AuditFilter, export_lines, one, page
from enclave.errors import Conflict, InvalidRequest
from enclave.gateway import access
from enclave.gateway.access import actor
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.schemas import DbInt
from enclave.gateway.schemas.console import (
    AuditPagePublic,
    AuditRecordPublic,
    AuditSummary,
    AuditVerdict,
    AuditVerify,
)

if TYPE_CHECKING:
    from pathlib import Path

    from enclave.config import Settings
    from enclave.gateway.services import Services

MAX_PAGE = 200
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
Text = Annotated[str | None, Query(max_length=256)]


def router(services: Services) -> APIRouter:
    admin = APIRouter(prefix="/api/admin/audit", dependencies=[access.ADMIN], responses=ERRORS)
    verifying = asyncio.Lock()

    @admin.get("")
    async def listing(
        *,
        user: Text = None, model: Text = None, action: Text = None, kind: Text = None,
        status: Text = None, q: Text = None, since: Text = None, until: Text = None,
        before: DbInt | None = None, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> AuditPagePublic:  # fmt: skip
        """Records newest first; ``next_before`` gives the next page. ``action`` is a
        prefix, ``status`` a code, a class (``5xx``) or ``error``, ``q`` a substring of
        the action, model, user or request id; ``since``/``until``: ISO 8601 (UTC if no zone)."""
        where = AuditFilter(user, model, action, kind, status, q, _moment(since, "since"),
                            _moment(until, "until"))  # fmt: skip
        found = await page(services.store.sessions, where, before=before, limit=limit)
        rows = [AuditSummary(**row) for row in found.rows]
        return AuditPagePublic(data=rows, next_before=found.next_before)

    @admin.get("/export", response_class=StreamingResponse, responses=_EXPORT)
    async def export(
        request: Request,
        *, format: Literal["jsonl", "csv"] = "jsonl",
        user: Text = None, model: Text = None, action: Text = None, kind: Text = None,
        status: Text = None, q: Text = None, since: Text = None, until: Text = None,
    ) -> StreamingResponse:  # fmt: skip
        """Every matching record whole, oldest first, streamed as a download (the form
        ``enclave audit export`` writes)."""
        where = AuditFilter(user, model, action, kind, status, q, _moment(since, "since"),
                            _moment(until, "until"))  # fmt: skip
        where.clauses()  # a bad filter is a 400 now, not a broken download
        await services.identity.audit_action(
            actor(request), "audit.export", {"format": format, **where.described()}
        )
        name = f"audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{format}"
        return StreamingResponse(
            export_lines(services.store.sessions, where, format), media_type=MEDIA[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip

    @admin.get("/{seq}")
    async def record(seq: DbInt) -> AuditRecordPublic:
        """One record whole: detail, content, images and its hashes."""
        return AuditRecordPublic(**await one(services.store.sessions, seq))

    @admin.post("/verify", openapi_extra=json_body(AuditVerify))
    async def verify(request: Request) -> AuditVerdict:
        """Check the whole chain and (unless ``witness`` is false) the witness, as
        ``enclave audit verify`` does; 409 while another verify runs."""
        given = await body_of(request, AuditVerify)
        if verifying.locked():
            raise Conflict("an audit verify is already running; try again when it is done")
        async with verifying:
            verdict, witness = await _verify(services, given.witness)
        answer = AuditVerdict(
            ok=verdict.ok, checked=verdict.checked, first_bad_seq=verdict.broken_seq,
            reason=verdict.reason, witness=witness, unanchored=verdict.unanchored,
        )  # fmt: skip
        await services.identity.audit_action(
            actor(request), "audit.verify",
            {"ok": answer.ok, "checked": answer.checked, "first_bad_seq": answer.first_bad_seq},
        )  # fmt: skip
        return answer

    return admin


_EXPORT: dict[int | str, dict[str, object]] = {
    200: {
        "description": "the records, as JSON lines or CSV (a download)",
        "content": {m.split(";")[0]: {"schema": {"type": "string"}} for m in MEDIA.values()},
    }
}


def _moment(text: str | None, param: str) -> str | None:
    """An ISO 8601 date or time as the audit log's ``ts`` text (UTC if no zone given)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):  # 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidRequest(
            f"{param}: not an ISO 8601 date or time: {text!r}", param=param
        ) from None


async def _verify(services: Services, witness: bool) -> tuple[Verdict, str]:
    """The verdict, and what the witness check found (or why it did not run)."""
    from enclave.audit.ops import verify_store
    from enclave.audit.witness import files_to_check

    settings = services.settings
    files = files_to_check(settings, None) if witness else None
    writer = services.audit
    if writer is not None and writer.witness is not None:
        await writer.witness.flush()  # the newest head, so the witness is current
    url = settings.database
    if _in_memory(url):  # no second connection sees it: verify here, between requests
        verdict = await verify_store(services.store.sessions, services.secret, witness=files)
    else:
        verdict = await asyncio.to_thread(_verify_apart, url, services.secret, files)
    return verdict, _witness_note(settings, verdict, witness, files)


def _verify_apart(url: str, key: bytes, files: list[Path] | None) -> Verdict:
    """``verify_store`` on a store of its own, in this (worker) thread's own loop."""
    from enclave.audit.ops import verify_store
    from enclave.store.repos import open_store

    async def run() -> Verdict:
        store = await open_store(url, migrate=False)
        try:
            return await verify_store(store.sessions, key, witness=files)
        finally:
            await store.aclose()

    return asyncio.run(run())


def _in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _witness_note(
    settings: Settings, verdict: Verdict, asked: bool, files: list[Path] | None
) -> str:
    if not asked:
        return "witness: not checked (witness: false)"
    if files is None:
        return "witness: off (audit.witness): a wipe or rollback would go unnoticed"
    if verdict.unanchored:
        return f"cannot check against the witness: {verdict.reason}"
    return verdict.witnessed or f"witness: {settings.audit.witness}"
