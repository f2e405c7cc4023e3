"""Gateway replicas on one database must share one ``secret.key``: a writer whose key did
not sign the chain's head says so in one error line as it starts, and cannot append."""

from __future__ import annotations

import logging

import pytest

from enclave.audit import AuditWriter
from enclave.audit.writer import FOREIGN_HEAD
from enclave.errors import AuditUnavailable
from enclave.store.repos import Store
from tests.storage.test_audit import KEY, entry

pytestmark = pytest.mark.anyio

OTHER_KEY = bytes(range(200, 232))


async def test_a_replica_with_another_key_says_so_when_it_starts(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = AuditWriter(store.sessions, KEY, strict=True)
    await first.write(entry(1))
    await first.aclose()
    second = AuditWriter(store.sessions, OTHER_KEY, strict=True)
    with caplog.at_level(logging.ERROR, logger="enclave.audit"):
        await second.witness_head()
    assert [r.getMessage() for r in caplog.records] == [FOREIGN_HEAD]
    with pytest.raises(AuditUnavailable, match="invalid signature"):
        await second.write(entry(2))
    await second.aclose()
    caplog.clear()
    same = AuditWriter(store.sessions, KEY, strict=True)  # the shared key: silent
    with caplog.at_level(logging.ERROR, logger="enclave.audit"):
        await same.witness_head()
    await same.aclose()
    assert caplog.records == []
