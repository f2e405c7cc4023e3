"""The spool: uploads to a knowledge base wait here, on disk, until a task ingests them.

``PUT /api/kb/{name}/documents/{filename}`` writes the body to ``<token>.upload`` and a
grant beside it, ``<token>.json`` (the knowledge base, the document's name and who sent
it), then submits a ``kb-ingest`` run naming the token. The ``kb_ingest`` step ingests a
spooled file only when its grant names the same knowledge base, name and owner as the
run, so a run cannot take another user's upload nor one meant for another knowledge base;
it removes the files once ingested. Uploads on disk survive a restart of the gateway (the
run is in the database). With several replicas, the spool folder must be one they share.

At most ``knowledge.ingest.max_jobs`` uploads wait at once (one more: 429); files left by
a run that never finished (cancelled, say) are removed by the first upload after
``tasks.keep_days``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from enclave.errors import InvalidRequest, NotFound, TooManyRequests

TOKEN = re.compile(r"^[0-9a-f]{32}$")
DATA, GRANT = ".upload", ".json"


@dataclass(frozen=True)
class Grant:
    """What a spooled upload is for."""

    kb: str
    name: str  # the document's name in the knowledge base
    owner: str | None  # who uploaded it (None when authentication is off)
    bytes: int


class Spool:
    """The spool folder ``folder`` (made when first written)."""

    def __init__(self, folder: Path, *, max_files: int, keep_s: float) -> None:
        self.folder = folder
        self.max_files = max_files
        self.keep_s = keep_s

    def put(self, data: bytes, grant: Grant) -> str:
        """Spool ``data`` for ``grant``; its token. 429 naming ``knowledge.ingest.max_jobs``
        when that many uploads wait already."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()
        waiting = self.count()
        if waiting >= self.max_files:
            raise TooManyRequests(
                f"{waiting} uploads are waiting to be ingested (knowledge.ingest.max_jobs); "
                "retry when one has finished", retry_after=10,
            )  # fmt: skip
        token = secrets.token_hex(16)
        _write(self.folder / (token + GRANT), json.dumps(grant.__dict__).encode())
        _write(self.folder / (token + DATA), data)
        return token

    def take(self, token: str, *, kb: str, name: str, owner: str | None) -> Path:
        """The spooled file ``token``, when its grant is for this knowledge base, name and
        owner; else :class:`NotFound` (the same as a file that is not there)."""
        if not TOKEN.match(token):
            raise InvalidRequest(f"{token!r} is not a spooled upload's name", param="files")
        gone = NotFound(
            f"{name}: the upload {token} is not in the spool (already ingested, or sent to "
            "another replica whose knowledge.ingest.spool_dir is not shared)"
        )
        try:
            grant = Grant(**json.loads((self.folder / (token + GRANT)).read_bytes()))
        except (OSError, ValueError, TypeError):
            raise gone from None
        if (grant.kb, grant.name, grant.owner) != (kb, name, owner):
            raise gone
        return self.folder / (token + DATA)

    def remove(self, token: str) -> None:
        if TOKEN.match(token):
            for suffix in (DATA, GRANT):
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / (token + suffix)).unlink()

    def count(self) -> int:
        try:
            return sum(1 for entry in os.scandir(self.folder) if entry.name.endswith(DATA))
        except FileNotFoundError:
            return 0

    def sweep(self) -> None:
        """Remove uploads older than ``keep_s`` (their run never finished)."""
        oldest = time.time() - self.keep_s
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < oldest:
                        os.unlink(entry.path)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` whole or not at all (a crash leaves no half file under the name)."""
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
