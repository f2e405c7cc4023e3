"""Standby members and fallback pools: the router's choice with scripted upstreams at the
I/O seam, the settings' checks, and what a reload keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from enclave.cli.upstreams import render
from enclave.config import RouterSettings, Settings, load_settings
from enclave.errors import ConfigError, NoHealthyUpstream, QueueFull, UpstreamError
from enclave.router import CallRecord, Member, Router, build_router
from enclave.router.router import Spec
from enclave.upstream.openai import HTTPUpstream
from tests.unit.test_router import Scripted, call, member


def router_of(specs: list[Spec], **settings: Any) -> Router:
    return Router(specs, RouterSettings(**settings), default_model=None)


def pool_router(*members: Member, **settings: Any) -> Router:
    """One pool, ``m``, of the given members."""
    return router_of([Spec(m, chat={"m": f"{m.name}-model"}) for m in members], **settings)


async def send(router: Router, model: str = "m", record: CallRecord | None = None) -> str:
    """Who answered a call for ``model``."""
    record = record or CallRecord(model=model)
    result, lease = await router.send(router.resolve(model, "chat"), {}, call, record)
    lease.done(True)
    served: str = result["served_by"]
    return served


# --- standby members -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_standby_member_takes_calls_only_while_no_primary_can() -> None:
    router = pool_router(member(Scripted("p1")), member(Scripted("p2")),
                         member(Scripted("s"), standby=True))  # fmt: skip
    assert {await send(router) for _ in range(20)} == {"p1", "p2"}
    router.members["p1"].checked(False, "refused")
    assert {await send(router) for _ in range(10)} == {"p2"}  # one primary is enough
    router.members["p2"].checked(False, "refused")
    record = CallRecord(model="m")
    assert await send(router, record=record) == "s"
    assert (record.member, record.pool, record.fell_back) == ("s", "m", False)
    router.members["p2"].checked(True)  # back: its breaker lets a trial through, then all
    assert {await send(router) for _ in range(10)} == {"p2"}


@pytest.mark.anyio
async def test_a_primary_that_fails_a_call_is_retried_on_the_standby() -> None:
    router = pool_router(member(Scripted("p", [UpstreamError("p is down")])),
                         member(Scripted("s"), standby=True))  # fmt: skip
    record = CallRecord(model="m")
    assert await send(router, record=record) == "s"
    assert (record.attempts, record.retries) == (2, 1)


@pytest.mark.anyio
async def test_busy_primaries_are_waited_for_not_passed_to_the_standby() -> None:
    primary = member(Scripted("p"), max_concurrency=1)
    router = pool_router(primary, member(Scripted("s"), standby=True), queue_timeout_s=0.05)
    pool = router.resolve("m", "chat")
    held = await pool.acquire()
    assert held.member is primary
    with pytest.raises(QueueFull, match="queue_timeout_s"):
        await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    primary.checked(False, "gone")  # now no primary can: the waiter gets the standby
    assert (await waiting).member.name == "s"


def test_health_and_views_show_standby_members() -> None:
    router = pool_router(member(Scripted("p")), member(Scripted("s"), standby=True))
    report = router.health()
    assert [(u["name"], u["standby"]) for u in report["upstreams"]] == [("p", False), ("s", True)]
    assert report["pools"][0]["standby"] == ["s"]


# --- fallback pools --------------------------------------------------------------------


def two_pools(**settings: Any) -> Router:
    """``big`` on one GPU member, ``small`` on the CPU member (its own upstream id)."""
    gpu, cpu = member(Scripted("gpu")), member(Scripted("cpu"))
    specs = [Spec(gpu, chat={"big": "/models/Big"}), Spec(cpu, chat={"small": "small-q4"})]
    return router_of(specs, fallbacks={"big": ["small"]}, **settings)


@pytest.mark.anyio
async def test_a_pool_with_no_healthy_member_hands_the_call_to_its_fallback() -> None:
    router = two_pools()
    assert await send(router, "big") == "gpu"
    router.members["gpu"].checked(False, "refused")
    record = CallRecord(model="big")
    result, lease = await router.send(router.resolve("big", "chat"), {"model": "big"}, call, record)
    lease.done(True)
    assert result == {"served_by": "cpu", "model": "small-q4"}  # the fallback's own id
    assert (record.pool, record.fell_back, record.retries) == ("small", True, 0)
    router.members["gpu"].checked(True)
    assert await send(router, "big") == "gpu"  # traffic returns


@pytest.mark.anyio
async def test_a_failed_call_goes_to_the_fallback_as_a_retry() -> None:
    router = two_pools()
    router.members["gpu"].upstream.answers.append(UpstreamError("gpu is down"))  # type: ignore[attr-defined]
    record = CallRecord(model="big")
    assert await send(router, "big", record) == "cpu"
    assert (record.attempts, record.retries, record.pool) == (2, 1, "small")


@pytest.mark.anyio
async def test_no_retries_left_means_no_fallback_after_a_failure() -> None:
    router = two_pools(retries=0)
    router.members["gpu"].upstream.answers.append(UpstreamError("gpu is down"))  # type: ignore[attr-defined]
    with pytest.raises(UpstreamError, match="gpu is down"):
        await send(router, "big")
    assert router.members["cpu"].upstream.calls == []  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_busy_pool_queues_instead_of_falling_back() -> None:
    gpu, cpu = member(Scripted("gpu"), max_concurrency=1), member(Scripted("cpu"))
    specs = [Spec(gpu, chat={"big": "big"}), Spec(cpu, chat={"small": "small"})]
    router = router_of(specs, fallbacks={"big": ["small"]}, queue_timeout_s=0.05)
    held = await router.resolve("big", "chat").acquire()
    with pytest.raises(QueueFull):
        await send(router, "big")
    held.done(True)


@pytest.mark.anyio
async def test_with_no_fallback_able_to_serve_the_asked_pool_is_named() -> None:
    router = two_pools()
    for name in ("gpu", "cpu"):
        router.members[name].checked(False, "refused")
    with pytest.raises(NoHealthyUpstream, match="serve big"):
        await send(router, "big")


def test_fallbacks_are_followed_depth_first_each_pool_once() -> None:
    names = "abcd"
    members = [member(Scripted(n)) for n in names]
    specs = [Spec(m, chat={n: n}) for m, n in zip(members, names, strict=True)]
    # a cycle only RouterSettings alone lets through (Settings refuses it): still no loop
    router = router_of(specs, fallbacks={"a": ["b", "d"], "b": ["c", "a"], "c": ["a"]})
    chain = router.fallbacks(router.resolve("a", "chat"))
    assert [pool.public for pool in chain] == ["a", "b", "c", "d"]


def test_a_call_with_images_skips_fallbacks_without_vision() -> None:
    vl, text, vl2 = Scripted("vl", vision=True), Scripted("text"), Scripted("vl2", vision=True)
    specs = [Spec(member(vl), chat={"v": "v"}), Spec(member(text), chat={"t": "t"}),
             Spec(member(vl2), chat={"v2": "v2"})]  # fmt: skip
    router = router_of(specs, fallbacks={"v": ["t", "v2"]})
    pool = router.resolve("v", "chat")
    assert [p.public for p in router.fallbacks(pool)] == ["v", "t", "v2"]
    assert [p.public for p in router.fallbacks(pool, vision=True)] == ["v", "v2"]


def test_an_embedding_pool_falls_back_only_to_embedding_pools() -> None:
    a, b = member(Scripted("a")), member(Scripted("b"))
    specs = [Spec(a, embeddings={"e": "e"}), Spec(b, chat={"c": "c"}, embeddings={"e2": "e2"})]
    router = router_of(specs, fallbacks={"e": ["c", "e2"]})
    chain = router.fallbacks(router.resolve("e", "embeddings"))
    assert [(p.kind, p.public) for p in chain] == [("embeddings", "e"), ("embeddings", "e2")]


# --- settings and reload ---------------------------------------------------------------


def config(tmp_path: Path, fallbacks: dict[str, list[str]], standby: bool = False) -> Path:
    path = tmp_path / "enclave.yaml"
    data = {
        "home": str(tmp_path),
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [
            {"name": "gpu", "base_url": "http://127.0.0.1:9/v1", "models": ["big"]},
            {
                "name": "gpu-b",
                "base_url": "http://127.0.0.1:10/v1",
                "models": ["big"],
                "standby": standby,
            },
            {"name": "cpu", "base_url": "http://127.0.0.1:11/v1", "models": ["small"]},
        ],
        "router": {"fallbacks": fallbacks},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fallbacks", "problem"),
    [
        ({"big": ["smal"]}, r"router\.fallbacks names \['smal'\], not declared models"),
        ({"bgi": ["small"]}, r"router\.fallbacks names \['bgi'\]"),
        ({"big": ["small"], "small": ["big"]}, r"router\.fallbacks has a cycle: (big|small) -> "),
        ({"big": ["big"]}, r"router\.fallbacks has a cycle: big -> big"),
    ],
)
def test_unknown_fallbacks_and_cycles_are_refused_naming_the_setting(
    tmp_path: Path, fallbacks: dict[str, list[str]], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(config(tmp_path, fallbacks))


@pytest.mark.anyio
async def test_a_reload_keeps_members_and_takes_the_new_standby_setting(tmp_path: Path) -> None:
    first = build_router(load_settings(config(tmp_path, {"big": ["small"]})))
    second = build_router(load_settings(config(tmp_path, {}, standby=True)), previous=first)
    assert second.members["gpu-b"] is first.members["gpu-b"]
    assert second.members["gpu-b"].options.standby
    assert second.settings.fallbacks == {}
    assert [p.public for p in second.fallbacks(second.resolve("big", "chat"))] == ["big"]
    assert Settings().router.fallbacks == {}
    for router in (first, second):
        for each in router.members.values():
            assert isinstance(each.upstream, HTTPUpstream)
            await each.upstream.aclose()


def test_enclave_upstreams_marks_standby_members() -> None:
    router = pool_router(member(Scripted("p")), member(Scripted("dr"), standby=True))
    table = render({"status": "ok", **router.health()}, "http://127.0.0.1:8000")
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith(("p ", "dr "))}
    assert "(standby)" in rows["dr"]
    assert "(standby)" not in rows["p"]
