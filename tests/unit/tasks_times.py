"""Shared times of the task tests."""

from datetime import UTC, datetime

T0 = datetime(
    2026, 3, 27, 12, 0, 0, tzinfo=UTC
)  # a Friday; Europe moves to summer time on the 29th
