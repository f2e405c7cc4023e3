"""Primary / standby members and a fallback pool under load, with real fakes killed with
SIGKILL and brought back: calls move to the standby, then to the fallback pool, and
return to the primaries; which pool answered is in the ``X-Enclave-Pool`` header, the
access log, the audit record and ``/metrics``. The client is the openai SDK with its own
retries off, so any failure the gateway lets through shows up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, audit_records, health_of, run_gateway, wait_member
from tests.helpers import load

ROUTER = {
    "health_interval_s": 0.2,
    "health_timeout_s": 2,  # a killed fake refuses at once; a loaded machine is slow
    "breaker_failures": 2,
    "breaker_open_s": 0.5,
    "fallbacks": {"big": ["small"]},
}


@dataclass
class Site:
    gateway: Gateway
    fakes: dict[str, FakeUpstream]
    client: openai.OpenAI


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``big``: primaries p1, p2 and the standby s; ``small``: one member, cpu."""
    with ExitStack() as stack:
        fakes = {
            name: stack.enter_context(
                run_fake_upstream(name=name, models=[model], itl_ms=10, tokens=6)
            )
            for name, model in (("p1", "big"), ("p2", "big"), ("s", "big"), ("cpu", "small-q4"))
        }
        upstreams: list[dict[str, Any]] = [
            {"name": name, "base_url": fakes[name].base_url, "models": ["big"]}
            for name in ("p1", "p2")
        ]
        upstreams.append(
            {"name": "s", "base_url": fakes["s"].base_url, "models": ["big"], "standby": True}
        )
        upstreams.append({
            "name": "cpu", "base_url": fakes["cpu"].base_url, "models": ["small"],
            "aliases": {"small": "small-q4"},
        })  # fmt: skip
        config = {
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "router": ROUTER,
            "upstreams": upstreams,
        }
        gateway = stack.enter_context(run_gateway(tmp_path_factory.mktemp("standby"), config))
        client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0, timeout=30)
        stack.callback(client.close)
        yield Site(gateway, fakes, client)


def ask(client: openai.OpenAI) -> tuple[str, str, str]:
    """A non-streamed call for ``big``: (member, pool, the body's model)."""
    raw = client.chat.completions.with_raw_response.create(
        model="big", messages=[{"role": "user", "content": "hi"}]
    )
    return raw.headers["x-enclave-upstream"], raw.headers["x-enclave-pool"], raw.parse().model


def stream(client: openai.OpenAI) -> tuple[str, str, set[str], str | None]:
    """A streamed call: (member, pool, the chunks' models, how it ended)."""
    raw = client.chat.completions.with_raw_response.create(
        model="big", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    models, end = set(), None
    for chunk in raw.parse():
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].finish_reason:
            end = chunk.choices[0].finish_reason
    return raw.headers["x-enclave-upstream"], raw.headers["x-enclave-pool"], models, end


def metric(gateway: Gateway, line: str) -> float:
    text = httpx.get(gateway.url + "/metrics", trust_env=False, timeout=5).text
    found = [row for row in text.splitlines() if row.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


FALLBACK = 'enclave_fallback_total{model="big",pool="small"}'


def test_standby_then_fallback_under_kill_and_back(site: Site) -> None:
    gw, fakes, client = site.gateway, site.fakes, site.client
    assert member_standby(gw) == {"p1": False, "p2": False, "s": True, "cpu": False}
    with load(lambda: ask(client)) as running:
        running.wait(lambda a: a[:2] in {("p1", "big"), ("p2", "big")})
        assert fakes["s"].stats()["completed"] == 0  # idle while a primary can serve

        fakes["p1"].kill()  # one primary gone: the other carries on, the standby idles
        fakes["p2"].kill()  # none left: the standby answers, the pool is still big
        running.wait(lambda a: a == ("s", "big", "big"))
        assert stream(client) == ("s", "big", {"big"}, "stop")
        assert health_of(gw)[1]["status"] == "ok"

        fakes["s"].kill()  # big has no member at all: its fallback, small, answers
        running.wait(lambda a: a == ("cpu", "small", "big"))  # the model asked for stays
        assert stream(client) == ("cpu", "small", {"big"}, "stop")
        assert fakes["cpu"].requests()[-1]["model"] == "small-q4"  # the fallback's own id

        for name in ("p1", "p2", "s"):
            fakes[name].restart()
        running.wait(lambda a: a[:2] in {("p1", "big"), ("p2", "big")}, count=20)
    assert running.errors == []
    assert wait_member(gw, "p1", lambda m: True)["state"] == "healthy"
    assert metric(gw, FALLBACK) >= 10


def member_standby(gateway: Gateway) -> dict[str, bool]:
    return {u["name"]: u["standby"] for u in health_of(gateway)[1]["upstreams"]}


def tagged(client: openai.OpenAI, request_id: str) -> tuple[str, str]:
    """A call with its own request id: (member, pool)."""
    raw = client.chat.completions.with_raw_response.create(
        model="big", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": request_id},
    )  # fmt: skip
    return raw.headers["x-enclave-upstream"], raw.headers["x-enclave-pool"]


def test_the_access_log_and_the_audit_name_the_pool_that_answered(site: Site) -> None:
    gw, fakes, client = site.gateway, site.fakes, site.client
    for name in ("p1", "p2"):
        if fakes[name].process.poll() is not None:  # (the test before failed half-way)
            fakes[name].restart()
        wait_member(gw, name, lambda m: m["state"] == "healthy")
    primary = tagged(client, "standby-big")
    assert primary[1] == "big"
    for name in ("p1", "p2", "s"):
        fakes[name].kill()
        wait_member(gw, name, lambda m: m["state"] == "unhealthy")
    before = metric(gw, FALLBACK)
    assert tagged(client, "standby-small") == ("cpu", "small")
    assert metric(gw, FALLBACK) == before + 1
    lines = [json.loads(row[row.index("{") :]) for row in gw.log().splitlines()
             if '"request_id": "standby-' in row]  # fmt: skip
    pools = {line["request_id"]: (line["upstream"], line["pool"]) for line in lines}
    assert pools == {"standby-big": primary, "standby-small": ("cpu", "small")}
    records = {r["request_id"]: r for r in audit_records(gw) if r["request_id"] in pools}
    assert {rid: (r["member"], r["detail"]["pool"]) for rid, r in records.items()} == pools
