"""Issue 13 §1: one caller whose requests make the upstream answer 500 must not eject the
member for everyone. A real gateway on loopback in front of the real fake upstream; the
callers are told apart by their address (X-Forwarded-For from a trusted proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, run_gateway, wait_member

POISON = "POISON-7f3a"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream]]:
    with run_fake_upstream(name="a", models=["m"]) as a:
        a.configure(poison=POISON)
        config = {
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "auth": {"trusted_proxies": ["127.0.0.1/32"]},
            "router": {
                "health_interval_s": 0.2,
                "breaker_failures": 3,
                "breaker_open_s": 30,
                "caller_backoff_s": 30,
                "retries": 0,
            },
            "upstreams": [{"name": "a", "base_url": a.base_url, "models": ["m"]}],
        }
        with run_gateway(tmp_path, config) as gateway:
            yield gateway, a


def chat(gateway: Gateway, caller: str, text: str = "hi") -> httpx.Response:
    return httpx.post(
        gateway.v1 + "/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
        headers={"X-Forwarded-For": caller},
        trust_env=False,
        timeout=30,
    )


def error(reply: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()["error"]
    return body


def test_one_callers_poison_requests_slow_that_caller_down_not_the_others(
    setup: tuple[Gateway, FakeUpstream],
) -> None:
    gateway, a = setup
    for _ in range(3):
        assert chat(gateway, "10.0.0.1", POISON).status_code >= 500
    for _ in range(5):  # today: 503 no_healthy_upstream for everyone
        reply = chat(gateway, "10.0.0.2")
        assert reply.status_code == 200, reply.text
    assert wait_member(gateway, "a", lambda m: True)["breaker"] == "closed"
    slowed = chat(gateway, "10.0.0.1")  # even a harmless request waits now
    assert slowed.status_code == 429
    assert int(slowed.headers["retry-after"]) >= 1
    assert error(slowed)["code"] == "caller_backoff"
    assert "router.caller_backoff_s" in error(slowed)["message"]
    assert a.stats()["requests"] == 8  # the slowed-down call never reached the member


def test_an_outage_that_several_callers_see_still_ejects_the_member(
    setup: tuple[Gateway, FakeUpstream],
) -> None:
    gateway, a = setup
    for _ in range(3):
        assert chat(gateway, "10.0.0.1", POISON).status_code >= 500
    assert chat(gateway, "10.0.0.2").status_code == 200
    a.configure(fail_status=500)  # now it fails everyone
    for caller in ("10.0.0.2", "10.0.0.3", "10.0.0.2"):
        assert chat(gateway, caller).status_code >= 500
    wait_member(gateway, "a", lambda m: m["breaker"] == "open")
    refused = chat(gateway, "10.0.0.4")
    assert refused.status_code == 503
    assert error(refused)["code"] == "no_healthy_upstream"


def test_a_failing_health_check_still_ejects_the_member(
    setup: tuple[Gateway, FakeUpstream],
) -> None:
    gateway, a = setup
    assert chat(gateway, "10.0.0.2").status_code == 200
    a.configure(health_status=500)
    wait_member(gateway, "a", lambda m: m["state"] == "unhealthy")
    assert chat(gateway, "10.0.0.2").status_code == 503
