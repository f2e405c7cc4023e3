"""The audit hash chain without a database: canonical form, links, signatures, verify.

Also the secret key file (``enclave.secretkey``) the chain is signed with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from enclave.audit.chain import (
    GENESIS,
    AuditEntry,
    Checkpoint,
    Head,
    StoredRecord,
    Verifier,
    canonical,
    iso_utc,
    link,
    sign,
    signed_checkpoint,
    signed_head,
    verify,
)
from enclave.errors import ConfigError
from enclave.secretkey import load_or_create

KEY = b"k" * 32
OTHER_KEY = b"x" * 32


def entry(n: int, **changes: Any) -> AuditEntry:
    base = AuditEntry(
        ts=iso_utc(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=n)),
        kind="api",
        action="POST /v1/chat/completions",
        request_id=f"req-{n}",
        user="alice",
        key_prefix="sk-abc",
        client_ip="10.0.0.1",
        model="qwen",
        member="gpu1",
        status=200,
        tokens_in=10,
        tokens_out=20,
        latency_ms=30,
        images=("ab" * 32,),
        content="cd" * 32,
        detail={"n": n, "nested": {"b": 1, "a": [1, 2]}},
    )
    return dataclasses.replace(base, **changes)


def chain(count: int, *, start: int = 1, prev: str = GENESIS) -> list[StoredRecord]:
    records = []
    for seq in range(start, start + count):
        item = entry(seq)
        digest = link(prev, seq, item)
        records.append(StoredRecord(seq, item, prev, digest))
        prev = digest
    return records


def head_of(records: list[StoredRecord], key: bytes = KEY) -> Head:
    return signed_head(key, records[-1].seq, records[-1].hash)


def edited(record: StoredRecord, **changes: Any) -> StoredRecord:
    return dataclasses.replace(record, entry=dataclasses.replace(record.entry, **changes))


# -- canonical form and links ---------------------------------------------------------


def test_canonical_is_sorted_compact_utf8_json_with_seq() -> None:
    item = entry(1, user="张三", detail={"z": 1, "a": "é"})
    text = canonical(7, item)
    data = json.loads(text)
    assert data["seq"] == 7
    assert data["user"] == "张三"
    assert list(data) == sorted(data)
    assert b" " not in text.replace(b"POST /v1", b"")
    assert "张三".encode() in text  # UTF-8, not \u escapes
    assert canonical(7, item) == canonical(7, dataclasses.replace(item, detail={"a": "é", "z": 1}))


def test_canonical_is_the_same_for_lists_and_tuples_of_images() -> None:
    assert canonical(1, entry(1, images=("a", "b"))) == canonical(1, entry(1, images=["a", "b"]))


def test_canonical_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        canonical(1, entry(1, detail={"x": float("nan")}))


FIELD_CHANGES: dict[str, Any] = {  # a value of each field's type, unlike entry(1)'s
    "ts": iso_utc(datetime(2030, 1, 1, tzinfo=UTC)),
    "kind": "admin",
    "action": "keys.create",
    "request_id": "other",
    "user": "mallory",
    "key_prefix": None,
    "client_ip": "10.9.9.9",
    "model": "other",
    "member": "gpu2",
    "status": 500,
    "tokens_in": 11,
    "tokens_out": 0,
    "latency_ms": None,
    "images": (),
    "content": None,
    "detail": {"n": 2},
}


def test_every_entry_field_is_covered_by_the_changes_below() -> None:
    fields = {f.name for f in dataclasses.fields(AuditEntry)}
    assert set(FIELD_CHANGES) == fields


@pytest.mark.parametrize("name", sorted(FIELD_CHANGES))
def test_link_changes_with_every_field(name: str) -> None:
    item = entry(1)
    assert link(GENESIS, 1, item) != link(GENESIS, 1, edited_entry(item, name))


def edited_entry(item: AuditEntry, name: str) -> AuditEntry:
    return dataclasses.replace(item, **{name: FIELD_CHANGES[name]})


def test_link_changes_with_seq_and_prev_hash() -> None:
    item = entry(1)
    digest = link(GENESIS, 1, item)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert link(GENESIS, 2, item) != digest
    assert link("1" * 64, 1, item) != digest
    assert link(GENESIS, 1, item) == digest


def test_sign_is_hmac_sha256_hex_and_depends_on_the_key() -> None:
    assert sign(KEY, "a") == sign(KEY, "a")
    assert len(sign(KEY, "a")) == 64
    assert sign(KEY, "a") != sign(OTHER_KEY, "a")
    assert sign(KEY, "a") != sign(KEY, "b")


def test_head_and_checkpoint_signatures_are_not_interchangeable() -> None:
    head = signed_head(KEY, 5, "a" * 64)
    checkpoint = signed_checkpoint(KEY, 5, "a" * 64, "")
    assert head.signature != checkpoint.signature


def test_iso_utc_is_sortable_text_in_utc_with_microseconds() -> None:
    moment = datetime(2025, 3, 4, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=8)))
    assert iso_utc(moment) == "2025-03-03T21:06:07.000008Z"
    assert iso_utc(datetime(2025, 1, 1)) == "2025-01-01T00:00:00.000000Z"  # naive = UTC
    assert iso_utc(datetime(2025, 1, 1, tzinfo=UTC)) < iso_utc(datetime(2025, 1, 1, 0, 0, 1))


def test_entry_round_trips_through_a_row() -> None:
    record = chain(1)[0]
    again = StoredRecord.from_row(json.loads(json.dumps(record.as_row())))
    assert again.hash == link(again.prev_hash, again.seq, again.entry)
    assert canonical(1, again.entry) == canonical(1, record.entry)


# -- verify -----------------------------------------------------------------------------


def test_a_whole_chain_verifies() -> None:
    records = chain(20)
    verdict = verify(records, head_of(records), None, KEY)
    assert verdict.ok
    assert verdict.checked == 20
    assert verdict.broken_seq is None
    assert verdict.reason == "20 records verified"


def test_an_empty_chain_verifies_with_or_without_a_genesis_head() -> None:
    assert verify([], None, None, KEY).ok
    assert verify([], signed_head(KEY, 0, GENESIS), None, KEY).ok


@pytest.mark.parametrize("name", sorted(FIELD_CHANGES))
def test_an_edited_field_names_its_record(name: str) -> None:
    records = chain(10)
    head = head_of(records)
    records[4] = dataclasses.replace(records[4], entry=edited_entry(records[4].entry, name))
    verdict = verify(records, head, None, KEY)
    assert not verdict.ok
    assert verdict.broken_seq == 5
    assert verdict.checked == 4
    shown = records[4].entry  # the record as stored names it
    assert verdict.reason.startswith(f"record 5 ({shown.ts}, {shown.action}): edited")
    assert "edited" in verdict.reason


@pytest.mark.parametrize("column", ["prev_hash", "hash"])
def test_an_edited_hash_names_its_record(column: str) -> None:
    records = chain(10)
    head = head_of(records)
    edited: dict[str, Any] = {column: "f" * 64}
    records[4] = dataclasses.replace(records[4], **edited)
    verdict = verify(records, head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 5)


def test_a_record_edited_and_rehashed_is_named_by_the_next_link() -> None:
    records = chain(10)
    head = head_of(records)
    forged = records[4].entry.__class__(**{**vars_of(records[4].entry), "user": "mallory"})
    records[4] = StoredRecord(
        5, forged, records[4].prev_hash, link(records[4].prev_hash, 5, forged)
    )
    verdict = verify(records, head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 5)
    assert "re-hashed" in verdict.reason
    assert "record 6" in verdict.reason


def vars_of(item: AuditEntry) -> dict[str, Any]:
    return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}


def test_the_last_record_edited_and_rehashed_is_caught_by_the_head() -> None:
    records = chain(5)
    head = head_of(records)
    last = edited(records[-1], user="mallory")
    records[-1] = dataclasses.replace(last, hash=link(last.prev_hash, 5, last.entry))
    verdict = verify(records, head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 5)
    assert "signed head" in verdict.reason


def test_a_deleted_middle_record_is_named_as_the_gap() -> None:
    records = chain(10)
    head = head_of(records)
    del records[6]
    verdict = verify(records, head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 7)
    assert verdict.reason.startswith("record 7 (missing, after record 6 (")
    assert "before record 8 (" in verdict.reason
    assert "deleted" in verdict.reason


def test_a_deleted_first_record_is_named() -> None:
    records = chain(3)
    verdict = verify(records[1:], head_of(records), None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)
    assert "start of the chain" in verdict.reason


def test_a_deleted_last_record_is_caught_by_the_head() -> None:
    records = chain(10)
    head = head_of(records)
    verdict = verify(records[:-1], head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 10)
    assert "signed head is at record 10" in verdict.reason
    assert verdict.checked == 9


def test_all_records_deleted_is_caught_by_the_head() -> None:
    records = chain(3)
    verdict = verify([], head_of(records), None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


def test_a_head_rewound_without_the_key_is_forged() -> None:
    records = chain(10)
    forged = Head(9, records[8].hash, sign(OTHER_KEY, "whatever"))
    verdict = verify(records[:-1], forged, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 9)
    assert "signature is invalid" in verdict.reason


def test_a_head_signed_with_another_key_is_forged() -> None:
    records = chain(3)
    verdict = verify(records, head_of(records, OTHER_KEY), None, KEY)
    assert not verdict.ok
    assert "signature is invalid" in verdict.reason


def test_a_missing_head_is_reported() -> None:
    verdict = verify(chain(3), None, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "head of the chain is missing" in verdict.reason


def test_records_beyond_the_head_are_inserted() -> None:
    records = chain(5)
    verdict = verify(records, signed_head(KEY, 4, records[3].hash), None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 5)
    assert "beyond the signed head" in verdict.reason


def test_reordered_records_break_the_chain() -> None:
    records = chain(5)
    swapped = [records[0], records[2], records[1], records[3], records[4]]
    verdict = verify(swapped, head_of(records), None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 2)


# -- checkpoints --------------------------------------------------------------------


def pruned(count: int, upto: int) -> tuple[list[StoredRecord], Checkpoint, Head]:
    records = chain(count)
    checkpoint = signed_checkpoint(KEY, upto, records[upto - 1].hash, "2025-02-01T00:00:00Z")
    return records[upto:], checkpoint, head_of(records)


def test_the_rest_of_a_pruned_chain_verifies_from_its_checkpoint() -> None:
    rest, checkpoint, head = pruned(10, 4)
    verdict = verify(rest, head, checkpoint, KEY)
    assert verdict.ok
    assert verdict.checked == 6
    assert rest[0].prev_hash == checkpoint.last_hash


def test_a_chain_pruned_to_nothing_verifies() -> None:
    records = chain(4)
    checkpoint = signed_checkpoint(KEY, 4, records[-1].hash, "t")
    assert verify([], head_of(records), checkpoint, KEY).ok


def test_without_its_checkpoint_a_pruned_chain_is_broken() -> None:
    rest, _, head = pruned(10, 4)
    verdict = verify(rest, head, None, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


@pytest.mark.parametrize(
    "change",
    [{"upto_seq": 5}, {"last_hash": "e" * 64}, {"created_at": "2099"}, {"signature": "0" * 64}],
)
def test_a_tampered_checkpoint_is_detected(change: dict[str, Any]) -> None:
    rest, checkpoint, head = pruned(10, 4)
    verdict = verify(rest, head, dataclasses.replace(checkpoint, **change), KEY)
    assert not verdict.ok
    assert "checkpoint" in verdict.reason


def test_a_record_in_the_pruned_range_is_inserted() -> None:
    records = chain(10)
    rest, checkpoint, head = pruned(10, 4)
    verdict = verify([records[2], *rest], head, checkpoint, KEY)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "pruned range" in verdict.reason


def test_the_verifier_stops_feeding_after_a_failure() -> None:
    records = chain(5)
    verifier = Verifier(head_of(records), None, KEY)
    assert verifier.feed(records[0])
    assert not verifier.feed(records[2])
    assert not verifier.feed(records[1])
    assert verifier.finish().broken_seq == 2


# -- the secret key -----------------------------------------------------------------


def test_the_key_is_created_private_and_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret.key"
    key = load_or_create(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    assert load_or_create(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left


def test_two_installs_get_different_keys(tmp_path: Path) -> None:
    assert load_or_create(tmp_path / "a") != load_or_create(tmp_path / "b")


def test_a_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"accessible to other users.*chmod 600"):
        load_or_create(path)


def test_a_malformed_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not hex\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="32 bytes as hex"):
        load_or_create(path)


def test_an_unreadable_key_location_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot (read|create) secret key file"):
        load_or_create(blocker / "secret.key")
