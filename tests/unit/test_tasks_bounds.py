"""Bounds of what a task's input can cost or reach: percent-encoded dot segments in URLs,
patterns (globs and ``match``) that backtrack, old files beyond ``max_files``, ``head``,
output files that are not plain names, leftover children of commands, the output
folder's file count, and templates that would run or grow without end."""

from __future__ import annotations

import pytest

from enclave.tasks import safety

pytestmark = pytest.mark.anyio


def test_percent_encoded_dot_segments_do_not_pass_the_allowlist() -> None:
    allow = ["http://wiki/api/"]
    bad = ["http://wiki/api/%2e%2e/admin", "http://wiki/api/%2E%2e/admin",
           "http://wiki/api/..%2fadmin", "http://wiki/api/..%5Cadmin",
           "http://wiki/api/%252e%252e/admin", "http://wiki/api/..;x/admin",
           "http://wiki/api/x/%2e%2e/%2e%2e/admin"]  # fmt: skip
    assert [u for u in bad if safety.allowed_url(u, allow)] == []
    good = ["http://wiki/api/a%2fb", "http://wiki/api/x/%2e%2e/y", "http://wiki/api/v?q=%2e%2e"]
    assert [u for u in good if not safety.allowed_url(u, allow)] == []
