"""The hash chain of audit records: canonical form, links, signatures, verification.

Pure: no I/O, no clock. Each record stores ``prev_hash`` (the hash of the record
before it, or :data:`GENESIS`) and ``hash = SHA-256(prev_hash + canonical(seq, entry))``,
so editing a field, deleting a row or reordering rows breaks the chain at that record.
Two rows signed with the secret key close the chain at both ends:

- the **head** (seq and hash of the last record): deleting or editing records at the
  end is detected, and the head cannot be rewound without the key;
- a **checkpoint** (seq and hash of the last pruned record): retention deletes a prefix
  of the chain and the first remaining record must follow the checkpoint.

:class:`Verifier` checks a stream of records in seq order in constant memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
_ROTATED = "; or secret.key was replaced: `enclave audit resign --old-key FILE` re-signs"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# The fields of an entry, in the order of the ``audit`` table.
ENTRY_FIELDS = (
    "ts", "kind", "action", "request_id", "user", "key_prefix", "client_ip", "model",
    "member", "status", "tokens_in", "tokens_out", "latency_ms", "images", "content", "detail",
)  # fmt: skip
RECORD_FIELDS = ("seq", *ENTRY_FIELDS, "prev_hash", "hash")


def iso_utc(moment: datetime) -> str:
    """``2025-01-31T12:00:00.000000Z``: sortable as text; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TS_FORMAT)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What is recorded about one API call or administrative action."""

    ts: str  # iso_utc(): ISO 8601, UTC, microseconds
    kind: str  # "api" | "admin"
    action: str  # the route (e.g. /v1/chat/completions), or keys.create, login.failed ...
    request_id: str | None = None
    user: str | None = None
    key_prefix: str | None = None
    client_ip: str | None = None
    model: str | None = None
    member: str | None = None  # the upstream pool member that served the call
    status: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_ms: int | None = None
    images: Sequence[str] = ()  # SHA-256 hex of each image
    content: str | None = None  # per audit.content: None, a hash, or the full JSON
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """The column values (``images`` as a list, ``detail`` as a dict)."""
        row = {name: getattr(self, name) for name in ENTRY_FIELDS}
        row["images"] = list(self.images)
        row["detail"] = dict(self.detail)
        return row

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditEntry:
        values = {name: row[name] for name in ENTRY_FIELDS}
        values["images"] = tuple(values["images"] or ())
        values["detail"] = values["detail"] if values["detail"] is not None else {}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A row of the ``audit`` table."""

    seq: int
    entry: AuditEntry
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredRecord:
        return cls(row["seq"], AuditEntry.from_row(row), row["prev_hash"], row["hash"])

    def as_row(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            **self.entry.as_row(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def describe(self) -> str:
        return f"record {self.seq} ({self.entry.ts}, {self.entry.action})"


@dataclass(frozen=True, slots=True)
class Head:
    """The signed end of the chain: the last record's seq and hash (0 and GENESIS if none)."""

    seq: int
    hash: str
    signature: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where pruning cut the chain: the last pruned record's seq and hash, signed."""

    upto_seq: int
    last_hash: str
    created_at: str
    signature: str


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int  # records whose hash and link were checked
    broken_seq: int | None  # the first broken (or missing) record
    reason: str  # ok: "N records verified"; else names the record and what is wrong
    witnessed: str = ""  # what the check against the witness found (empty: not checked)
    unanchored: bool = False  # not ok because the witness could not be checked


def canonical(seq: int, entry: AuditEntry) -> bytes:
    """Deterministic JSON of the record's content: sorted keys, no spaces, UTF-8."""
    data = entry.as_row()
    data["seq"] = seq
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def link(prev_hash: str, seq: int, entry: AuditEntry) -> str:
    """The hash of record ``seq``: SHA-256 hex of ``prev_hash`` + :func:`canonical`."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(seq, entry))
    return digest.hexdigest()


def linked_rows(
    key: bytes, head: Head, entries: Iterable[AuditEntry]
) -> tuple[list[dict[str, Any]], Head]:
    """The records of ``entries`` after ``head``, each linked to the one before, and the
    new signed head: what every writer inserts and stores."""
    seq, prev = head.seq, head.hash
    rows: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        digest = link(prev, seq, entry)
        rows.append({"seq": seq, **entry.as_row(), "prev_hash": prev, "hash": digest})
        prev = digest
    return rows, signed_head(key, seq, prev)


def sign(key: bytes, text: str) -> str:
    """HMAC-SHA256 hex of ``text`` with ``key``."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def head_text(seq: int, hash_: str) -> str:
    return f"enclave-audit-head\n{seq}\n{hash_}"


def checkpoint_text(upto_seq: int, last_hash: str, created_at: str) -> str:
    return f"enclave-audit-checkpoint\n{upto_seq}\n{last_hash}\n{created_at}"


def signed_head(key: bytes, seq: int, hash_: str) -> Head:
    return Head(seq, hash_, sign(key, head_text(seq, hash_)))


def signed_checkpoint(key: bytes, upto_seq: int, last_hash: str, created_at: str) -> Checkpoint:
    text = checkpoint_text(upto_seq, last_hash, created_at)
    return Checkpoint(upto_seq, last_hash, created_at, sign(key, text))


def head_is_genuine(key: bytes, head: Head) -> bool:
    return hmac.compare_digest(sign(key, head_text(head.seq, head.hash)), head.signature)


def checkpoint_is_genuine(key: bytes, cp: Checkpoint) -> bool:
    expected = sign(key, checkpoint_text(cp.upto_seq, cp.last_hash, cp.created_at))
    return hmac.compare_digest(expected, cp.signature)


def verify(
    records: Iterable[StoredRecord], head: Head | None, checkpoint: Checkpoint | None, key: bytes
) -> Verdict:
    """Check ``records`` (in seq order) against each other, the checkpoint and the head."""
    verifier = Verifier(head, checkpoint, key)
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.finish()


class Verifier:
    """Incremental :func:`verify`: ``feed`` each record in seq order, then ``finish``.

    ``feed`` returns False once the chain is broken (feeding more changes nothing).
    """

    def __init__(self, head: Head | None, checkpoint: Checkpoint | None, key: bytes) -> None:
        self.head = head
        self.checkpoint = checkpoint
        self.key = key
        self.checked = 0
        self.last: StoredRecord | None = None
        self.failure: Verdict | None = None
        self.next_seq = checkpoint.upto_seq + 1 if checkpoint else 1
        self.prev_hash = checkpoint.last_hash if checkpoint else GENESIS
        if checkpoint is not None and not checkpoint_is_genuine(key, checkpoint):
            self._fail(
                checkpoint.upto_seq,
                f"checkpoint at record {checkpoint.upto_seq} ({checkpoint.created_at}): "
                f"its signature is invalid (forged or edited without the key{_ROTATED})",
            )

    def feed(self, record: StoredRecord) -> bool:
        if self.failure is not None:
            return False
        problem = self._check(record)
        if problem is not None:
            self._fail(*problem)
            return False
        self.checked += 1
        self.last = record
        self.next_seq = record.seq + 1
        self.prev_hash = record.hash
        return True

    def finish(self) -> Verdict:
        if self.failure is None:
            problem = self._check_head()
            if problem is not None:
                self._fail(*problem)
        if self.failure is not None:
            return self.failure
        return Verdict(True, self.checked, None, f"{self.checked} records verified")

    # -- the checks ------------------------------------------------------------------

    def _check(self, record: StoredRecord) -> tuple[int, str] | None:
        if record.seq < self.next_seq:
            where = "in the pruned range" if self.checkpoint else "out of order"
            return record.seq, f"{record.describe()}: lies {where} (inserted)"
        if record.seq > self.next_seq:
            return self.next_seq, (
                f"record {self.next_seq} (missing, after {self._before()}, "
                f"before {record.describe()}): deleted"
            )
        if link(record.prev_hash, record.seq, record.entry) != record.hash:
            return record.seq, f"{record.describe()}: edited: its hash does not match its content"
        if record.prev_hash != self.prev_hash:
            return self._misfit(record)
        return None

    def _misfit(self, record: StoredRecord) -> tuple[int, str]:
        """``record`` is consistent in itself but does not follow the one before."""
        if self.last is None:
            anchor = "the checkpoint" if self.checkpoint else "the start of the chain"
            return record.seq, f"{record.describe()}: does not follow {anchor} (prev_hash differs)"
        return self.last.seq, (
            f"{self.last.describe()}: edited and re-hashed: {record.describe()} "
            "chains to a different hash"
        )

    def _check_head(self) -> tuple[int, str] | None:
        head = self.head
        end_seq = self.next_seq - 1
        if head is None:
            if self.last is None and self.checkpoint is None:
                return None  # an empty chain
            return end_seq, f"{self._before()}: the signed head of the chain is missing"
        if not head_is_genuine(self.key, head):
            return head.seq, (
                f"the head at record {head.seq}: its signature is invalid "
                f"(forged or edited without the key{_ROTATED})"
            )
        return self._check_end(head, end_seq)

    def _check_end(self, head: Head, end_seq: int) -> tuple[int, str] | None:
        """The last record checked must be the one the genuine head names."""
        if head.seq > end_seq:
            return end_seq + 1, (
                f"record {end_seq + 1} (missing, after {self._before()}): deleted "
                f"— the signed head is at record {head.seq}"
            )
        if head.seq < end_seq:
            return head.seq + 1, (
                f"record {head.seq + 1}: beyond the signed head at record {head.seq} (inserted)"
            )
        if head.hash != self.prev_hash:
            return end_seq, f"{self._before()}: edited and re-hashed: the signed head differs"
        return None

    def _before(self) -> str:
        """The end of what was checked so far: a record, the checkpoint, or the start."""
        if self.last is not None:
            return self.last.describe()
        if self.checkpoint is not None:
            return f"checkpoint at record {self.checkpoint.upto_seq}"
        return "the start of the chain"

    def _fail(self, seq: int, reason: str) -> None:
        self.failure = Verdict(False, self.checked, seq, reason)
