"""Hash-chained audit records: one per API call and administrative action.

- :mod:`enclave.audit.chain` — the pure part: entries, canonical form, links,
  signatures and :func:`~enclave.audit.chain.verify`;
- :mod:`enclave.audit.writer` — :class:`AuditWriter`, group commit (strict or not);
- :mod:`enclave.audit.ops` — verify the store, export, prune through a signed checkpoint
  (``retain``: the retention loop a gateway runs in the background).
"""

from enclave.audit.chain import AuditEntry, Verdict, iso_utc
from enclave.audit.ops import export, prune, retain, verify_store
from enclave.audit.writer import AuditWriter

__all__ = [
    "AuditEntry",
    "AuditWriter",
    "Verdict",
    "export",
    "iso_utc",
    "prune",
    "retain",
    "verify_store",
]
