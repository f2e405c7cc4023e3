"""The stored chain checked against the witness (:mod:`enclave.audit.witness`).

Every witnessed (seq, hash) must be in the chain with that hash, and the chain must not
end before the newest witnessed seq. Records the signed checkpoint accounts for (pruned)
need only agree with it at its own seq. So a wipe, a truncation, a rollback to an older
signed head, or a chain rebuilt after one, is found and the missing range named:
``records 41-57 are missing: the witness saw seq 57 at <time>`` (with an en dash).

The witness files are measured (:func:`measure`) before the database is read, and only
that much of each is read: a line appended meanwhile (a gateway still writing) names a
record the snapshot may not hold yet. Lines from several replicas may interleave in any
order; memory stays constant, the hashes are looked up ``batch`` at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from enclave.audit.chain import Checkpoint, Head, Verdict
from enclave.audit.witness import Sighting, WitnessUnreadable, key_id, sightings
from enclave.store.models import AuditRecord

BATCH = 1000


@dataclass(frozen=True, slots=True)
class Source:
    """A witness file and how much of it to read (None: it does not exist)."""

    path: Path
    size: int | None


def measure(paths: list[Path], *, required: bool) -> list[Source]:
    """Each file's size now; a missing file raises FileNotFoundError if ``required``."""
    sources = []
    for path in paths:
        try:
            sources.append(Source(path, path.stat().st_size))
        except FileNotFoundError:
            if required:
                raise
            sources.append(Source(path, None))
    return sources


def span(first: int, last: int, state: str) -> str:
    """``record 7 is missing`` or ``records 7-9 are missing`` (an en dash)."""
    if first == last:
        return f"record {first} is {state}"
    return f"records {first}–{last} are {state}"


@dataclass
class _Tally:
    key: bytes
    end: int  # the last seq of the chain (0: none)
    pruned: Checkpoint | None
    lines: int = 0
    earlier_key: int = 0
    newest: Sighting | None = None
    first_differs: Sighting | None = None  # the lowest witnessed seq the chain holds otherwise
    last_differs: Sighting | None = None  # the highest
    forged: Sighting | None = None
    _key_id: str = field(init=False)

    def __post_init__(self) -> None:
        self._key_id = key_id(self.key)

    @property
    def cut(self) -> int:
        return self.pruned.upto_seq if self.pruned else 0

    def see(self, sighting: Sighting) -> bool:
        """Count ``sighting``; True if its hash must be looked up in the chain."""
        self.lines += 1
        if self.newest is None or sighting.seq > self.newest.seq:
            self.newest = sighting
        if sighting.key != self._key_id:
            self.earlier_key += 1  # signed before a key rotation: checked against the chain
        elif not sighting.genuine(self.key) and self.forged is None:
            self.forged = sighting
        if sighting.seq < self.cut:
            return False  # pruned: the checkpoint accounts for it
        if sighting.seq == self.cut:
            assert self.pruned is not None
            self.judge(sighting, self.pruned.last_hash)
            return False
        return sighting.seq <= self.end

    def judge(self, sighting: Sighting, stored: str | None) -> None:
        if stored == sighting.hash:
            return
        if self.first_differs is None or sighting.seq < self.first_differs.seq:
            self.first_differs = sighting
        if self.last_differs is None or sighting.seq > self.last_differs.seq:
            self.last_differs = sighting


async def check(
    session: AsyncSession,
    sources: list[Source],
    key: bytes,
    *,
    head: Head | None,
    checkpoint: Checkpoint | None,
    verdict: Verdict,
    batch: int = BATCH,
) -> Verdict:
    """``verdict`` (the chain verified in ``session``'s snapshot) against the witness."""
    end = head.seq if head is not None else (checkpoint.upto_seq if checkpoint else 0)
    tally = _Tally(key, end, checkpoint)
    try:
        stream = _all(sources)
        while chunk := list(itertools.islice(stream, batch)):
            wanted = [s for s in chunk if tally.see(s)]
            stored = await _hashes(session, {s.seq for s in wanted})
            for sighting in wanted:
                tally.judge(sighting, stored.get(sighting.seq))
    except WitnessUnreadable as exc:
        return Verdict(False, verdict.checked, None, str(exc))
    return _conclude(tally, sources, verdict)


def _read(source: Source) -> Iterator[Sighting]:
    if source.size:
        yield from sightings(source.path, source.size)


async def _hashes(session: AsyncSession, seqs: set[int]) -> dict[int, str]:
    if not seqs:
        return {}
    query = select(AuditRecord.seq, AuditRecord.hash).where(AuditRecord.seq.in_(seqs))
    return {row[0]: row[1] for row in (await session.execute(query)).all()}


def _conclude(tally: _Tally, sources: list[Source], verdict: Verdict) -> Verdict:
    checked = verdict.checked
    if tally.forged is not None:
        reason = (
            f"{tally.forged.where()} (seq {tally.forged.seq}): its signature is invalid "
            "(not written with this installation's key)"
        )
        return Verdict(False, checked, tally.forged.seq, reason)
    newest = tally.newest
    if newest is None:
        if tally.end == 0:
            return replace(verdict, witnessed="witness: no lines yet (the chain is empty)")
        if sources:
            where = ", ".join(str(s.path) for s in sources)
            state = "is empty" if any(s.size is not None for s in sources) else "does not exist"
            problem = f"the witness {where} {state}"
        else:
            problem = "there is no witness file to read"
        reason = (
            f"{problem}, but the chain holds records up to {tally.end} (the witness was "
            "deleted, or they were written before it existed: a gateway witnesses the "
            "head when it starts)"
        )
        return Verdict(False, checked, None, reason, unanchored=True)
    gone = _missing(tally, newest, sources)
    if gone is not None:
        return Verdict(False, checked, gone[0], gone[1])
    note = f"; {tally.earlier_key} signed with an earlier key" if tally.earlier_key else ""
    summary = (
        f"witness: {tally.lines} lines agree with the chain "
        f"(newest: seq {newest.seq} at {newest.time}){note}"
    )
    return replace(verdict, witnessed=summary)


def _missing(tally: _Tally, newest: Sighting, sources: list[Source]) -> tuple[int, str] | None:
    """The first missing seq and the reason, if the chain lost witnessed records: those
    after the last witnessed record it still holds up to the last one it does not."""
    differs = tally.first_differs
    beyond = newest.seq > tally.end
    if differs is None and not beyond:
        return None
    last = newest if beyond else tally.last_differs
    assert last is not None
    if differs is None:
        first = tally.end + 1
    else:  # every witnessed record below ``differs`` was found as witnessed
        below = (s.seq for s in _all(sources) if tally.cut < s.seq < differs.seq)
        first = min(max(below, default=tally.cut) + 1, differs.seq)
    state = "missing" if differs is None else "missing or replaced"
    reason = (
        f"record {first}: {span(first, last.seq, state)}: "
        f"the witness saw seq {last.seq} at {last.time} ({last.where()})"
    )
    if differs is not None:
        reason += f"; the chain holds another record {differs.seq} than it saw"
    if beyond:
        reason += f"; the chain ends at record {tally.end}" if tally.end else "; the chain is empty"
    return first, reason


def _all(sources: list[Source]) -> Iterator[Sighting]:
    return itertools.chain.from_iterable(_read(source) for source in sources)
