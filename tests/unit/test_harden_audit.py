"""Reading witness lines back: only as far as the file reached when verify started, an
incomplete last line skipped, syslog prefixes ignored, anything else named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave.audit.chain import signed_head
from enclave.audit.witness import MARKER, WitnessUnreadable, key_id, sightings, witness_line

KEY = bytes(range(32))


def line(seq: int) -> str:
    head = signed_head(KEY, seq, f"{seq:064x}")
    return witness_line(head, KEY, datetime(2026, 1, 1, tzinfo=UTC), None)


def test_only_what_was_there_is_read(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text(line(1) + "\n" + line(2) + "\n")
    size = path.stat().st_size
    with path.open("a") as file:
        file.write(line(3) + "\n" + line(4)[:20])  # written after verify began; one torn
    assert [s.seq for s in sightings(path, size)] == [1, 2]
    assert [s.seq for s in sightings(path, path.stat().st_size)] == [1, 2, 3]
    first = next(sightings(path, size))
    assert (first.key, first.time, first.line) == (key_id(KEY), "2026-01-01T00:00:00.000000Z", 1)
    assert first.genuine(KEY)
    assert not first.genuine(bytes(32))


def test_syslog_prefixes_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text(f"Dec  5 10:00:00 gw1 enclave-audit: {MARKER}{line(7)}\n\n")
    assert [s.seq for s in sightings(path, path.stat().st_size)] == [7]


@pytest.mark.parametrize(
    "text", ["hello", "{}", '{"seq": 0, "hash": "x"}', line(1).replace('"seq":1', '"seq":-1')]
)
def test_anything_else_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "w"
    path.write_text(line(1) + "\n" + text + "\n")
    with pytest.raises(WitnessUnreadable, match=f"^witness line 2 of {path}: not a witness line$"):
        list(sightings(path, path.stat().st_size))
