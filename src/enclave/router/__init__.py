"""The router: public model names → pools of upstream members.

Balancing (:mod:`.policy`), circuit breakers (:mod:`.breaker`), a bounded queue per pool
(:mod:`.pool`), retries before the first byte and active health checks (:mod:`.router`).
"""

from enclave.router.build import build_router, retired
from enclave.router.member import Lease, Member
from enclave.router.pool import Pool
from enclave.router.record import CallRecord
from enclave.router.router import Router

__all__ = ["CallRecord", "Lease", "Member", "Pool", "Router", "build_router", "retired"]
