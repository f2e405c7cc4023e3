"""Uploads to ``/api/kb`` are ingested by a background job: wait for it, boundedly; and
the document bomb the hardening tests send."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from typing import Any

import httpx

from tests.faq import SECURITY, docx
from tests.gateway import Gateway

FINISHED = {"done", "failed", "cancelled"}


def wait_job(
    gateway: Gateway, headers: dict[str, str], job: dict[str, Any],
    until: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in FINISHED,
    timeout: float = 120.0,
) -> dict[str, Any]:  # fmt: skip
    """Poll the job ``job`` (an upload's 202 body) until ``until`` holds; its last view."""
    url = f"{gateway.url}/api/kb/{job['kb']}/jobs/{job['id']}"
    deadline = time.monotonic() + timeout
    while True:
        seen: dict[str, Any] = httpx.get(url, headers=headers, trust_env=False, timeout=30).json()
        if until(seen):
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job['id']} never got there; last seen: {seen}")
        time.sleep(0.05)


def upload(
    gateway: Gateway, headers: dict[str, str], kb: str, name: str, data: bytes
) -> dict[str, Any]:
    """PUT one document and wait for its job to finish; the finished job."""
    put = httpx.put(f"{gateway.url}/api/kb/{kb}/documents/{name}", content=data,
                    headers=headers, trust_env=False, timeout=120)  # fmt: skip
    assert put.status_code == 202, put.text
    return wait_job(gateway, headers, put.json())


def docx_bomb(paragraphs: int) -> bytes:
    """A real .docx whose body holds ``paragraphs`` empty paragraphs (7 bytes each)."""
    source = zipfile.ZipFile(io.BytesIO(docx(SECURITY)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "word/document.xml":
                head, tail = data.split(b"<w:body>")
                data = head + b"<w:body>" + b"<w:p/>" * paragraphs + tail
            bomb.writestr(member.filename, data)
    return out.getvalue()
