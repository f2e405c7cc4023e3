"""Request and response models of the gateway's APIs, one module per API surface.

Pydantic only: no I/O and no FastAPI, so the CLI can print the same JSON. Request bodies
are ``XCreate`` (or a verb: ``Login``, ``Search``), responses ``XPublic``; ``XPublic.of``
turns a service's domain object (a row, a dataclass) into what clients see. Times are
ISO 8601 strings as ``datetime.isoformat()`` writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from annotated_types import Interval
from pydantic import BaseModel

T = TypeVar("T")
INT64_MAX = 2**63 - 1
# An integer that reaches a database column (SQLite INTEGER, PostgreSQL bigint: 64 bits,
# signed): a larger one is refused at the door (400 naming the field) instead of failing
# in the driver (OverflowError, a 500). Also usable as a FastAPI path or query parameter.
DbInt = Annotated[int, Interval(ge=-(2**63), le=INT64_MAX)]


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Page(BaseModel, Generic[T]):
    """A list answer: ``{"data": [...]}``."""

    data: list[T]
