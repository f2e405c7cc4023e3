"""Failover under load, as the routing issue states it: real fakes killed with SIGKILL,
hung, recovering; a full queue; a config reload while requests run. The client is the
official openai SDK with its own retries off, so every failure the gateway lets through
would show up here."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, health_of, run_gateway, wait_member, write_config
from tests.helpers import load

ROUTER = {
    "health_interval_s": 0.2,
    "health_timeout_s": 0.5,
    "breaker_failures": 2,
    "breaker_open_s": 0.5,
}


def fake(name: str, **options: Any) -> Any:
    return run_fake_upstream(name=name, models=["m"], **options)


def member(fake: FakeUpstream, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": fake.base_url, "models": ["m"], **extra}


def config(*members: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "router": {**ROUTER, **router},
        "upstreams": list(members),
    }


OPENED: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close each test's SDK clients: a pooled socket left to the garbage collector warns
    (unclosed socket), and the suite turns warnings into errors."""
    yield
    while OPENED:
        OPENED.pop().close()


def sdk(gateway: Gateway, timeout: float = 30) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=timeout)
    OPENED.append(client)
    return client


def ask(client: openai.OpenAI, text: str = "hi", **extra: Any) -> tuple[str, str]:
    """A non-streamed call: (the member that answered, the reply text)."""
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": text}], **extra
    )
    reply = raw.parse()
    return raw.headers["x-enclave-upstream"], reply.choices[0].message.content or ""


def served(gateway: Gateway, name: str) -> int:
    count: int = wait_member(gateway, name, lambda m: True)["served"]
    return count


def test_kill_9_of_one_member_fails_no_non_streamed_request(tmp_path: Path) -> None:
    with (
        fake("a", itl_ms=20, tokens=10) as a,
        fake("b", itl_ms=20, tokens=10) as b,
        run_gateway(tmp_path, config(member(a, "a"), member(b, "b"))) as gw,
    ):
        client = sdk(gw)
        with load(lambda: ask(client), threads=6) as running:
            a.wait_stats(lambda s: s["completed"] >= 10)
            a.kill()
            before = running.done
            b.wait_stats(lambda s: s["completed"] >= 40, timeout=20)
        assert running.errors == []
        assert running.done > before
        state = wait_member(gw, "a", lambda m: m["state"] == "unhealthy")
        assert state["last_error"]
        assert health_of(gw)[1]["status"] == "ok"  # the pool still has b


def stream_text(client: openai.OpenAI, started: threading.Event | None = None) -> dict[str, Any]:
    """One streamed call; what arrived, who sent it, and how it ended."""
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    out: dict[str, Any] = {"member": raw.headers["x-enclave-upstream"], "text": "", "end": None}
    try:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                out["text"] += chunk.choices[0].delta.content
                if started:
                    started.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                out["end"] = chunk.choices[0].finish_reason
    except openai.APIError as exc:
        out["end"] = f"error: {exc.message}"
    return out


def test_kill_9_mid_stream_errors_started_streams_and_moves_waiting_ones(tmp_path: Path) -> None:
    with (
        fake("a", itl_ms=100, tokens=60) as a,
        fake("b", tokens=8) as b,
        # all traffic prefers a while it is up; b is the spare
        run_gateway(
            tmp_path, config(member(a, "a", weight=100), member(b, "b", weight=0.01))
        ) as gw,
        ThreadPoolExecutor(6) as pool,
    ):
        client = sdk(gw)
        flags = [threading.Event() for _ in range(3)]
        running = [pool.submit(stream_text, client, flag) for flag in flags]
        for flag in flags:
            assert flag.wait(10), "a stream never started"
        a.configure(hang=True)  # the next streams reach a but get no first byte
        waiting = [pool.submit(stream_text, client) for _ in range(3)]
        a.wait_stats(lambda s: s["in_flight"] == 6)
        a.kill()
        started = [f.result(timeout=20) for f in running]
        moved = [f.result(timeout=20) for f in waiting]
    for result in started:  # began on a: an error event, never a silent truncation
        assert result["member"] == "a"
        assert result["text"]
        assert result["end"] is not None
        assert result["end"].startswith("error: upstream a")
    for result in moved:  # had not started: served whole by b
        assert (result["member"], result["end"]) == ("b", "stop")
        assert result["text"].startswith("echo: stream")


def test_a_hung_member_times_out_is_ejected_and_its_requests_are_cancelled(
    tmp_path: Path,
) -> None:
    with (
        fake("a", hang=True) as a,
        fake("b") as b,
        run_gateway(
            tmp_path,
            config(
                member(a, "a", weight=100, total_timeout_s=0.5, first_byte_timeout_s=0.5),
                member(b, "b", weight=0.01),
                breaker_open_s=30,  # stays ejected for the rest of the test
            ),
        ) as gw,
    ):
        client = sdk(gw)
        first = [ask(client)[0] for _ in range(2)]
        assert first == ["b", "b"]  # each timed out on a, then b answered
        state = wait_member(gw, "a", lambda m: m["breaker"] == "open")
        assert state["failures"] == 2
        assert "0.5 s" in state["last_error"]
        started = time.monotonic()
        assert [ask(client)[0] for _ in range(5)] == ["b"] * 5
        assert time.monotonic() - started < 2.5  # no more 0.5 s waits on a
        a.wait_stats(lambda s: s["cancelled"] == 2 and s["in_flight"] == 0)
        assert b.stats()["completed"] == 7


def test_a_stream_that_stalls_ends_with_a_timeout_error_event(tmp_path: Path) -> None:
    with (
        fake("a", stall_after=2) as a,
        run_gateway(tmp_path, config(member(a, "a", read_timeout_s=0.5))) as gw,
    ):
        result = stream_text(sdk(gw))
        assert result["text"].count(" ") >= 1  # the two chunks that came
        assert "stopped sending mid-stream (read_timeout_s)" in result["end"]
        a.wait_stats(lambda s: s["cancelled"] == 1)  # and the upstream call was closed


def test_a_recovered_member_gets_traffic_again(tmp_path: Path) -> None:
    with (
        fake("a") as a,
        fake("b") as b,
        run_gateway(
            tmp_path, config(member(a, "a", weight=100), member(b, "b", weight=0.01))
        ) as gw,
    ):
        client = sdk(gw)
        assert ask(client)[0] == "a"
        a.kill()
        wait_member(gw, "a", lambda m: m["state"] == "unhealthy")
        assert {ask(client)[0] for _ in range(5)} == {"b"}
        a.restart()
        wait_member(gw, "a", lambda m: m["state"] == "healthy")
        deadline = time.monotonic() + 10
        while ask(client)[0] != "a":
            assert time.monotonic() < deadline, "traffic never returned to a"
        assert wait_member(gw, "a", lambda m: True)["breaker"] == "closed"
        assert b.stats()["completed"] >= 5


def test_a_full_queue_is_a_429_with_retry_after_and_queued_calls_are_served(
    tmp_path: Path,
) -> None:
    with (
        fake("a", ttft_ms=600) as a,
        run_gateway(
            tmp_path, config(member(a, "a", max_concurrency=1), queue_size=1, queue_timeout_s=10)
        ) as gw,
        ThreadPoolExecutor(2) as pool,
    ):
        client = sdk(gw)
        busy = pool.submit(ask, client)
        a.wait_stats(lambda s: s["in_flight"] == 1)
        create = client.chat.completions.with_raw_response.create
        queued = pool.submit(
            lambda: create(model="m", messages=[{"role": "user", "content": "queued"}])
        )
        deadline = time.monotonic() + 5
        while health_of(gw)[1]["pools"][0]["queued"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client)
        error = caught.value
        assert int(error.response.headers["retry-after"]) >= 1
        assert error.code == "queue_full"
        assert "router.queue_size=1" in error.message
        assert busy.result(timeout=10)[0] == "a"
        waited = queued.result(timeout=10)
        assert float(waited.headers["x-enclave-queue-ms"]) > 100
        assert a.stats()["max_in_flight"] == 1  # the cap held


def test_waiting_longer_than_the_queue_timeout_is_a_429(tmp_path: Path) -> None:
    with (
        fake("a", ttft_ms=1500) as a,
        run_gateway(tmp_path, config(member(a, "a", max_concurrency=1), queue_timeout_s=0.3)) as gw,
        ThreadPoolExecutor(1) as pool,
    ):
        client = sdk(gw)
        busy = pool.submit(ask, client)
        a.wait_stats(lambda s: s["in_flight"] == 1)
        with pytest.raises(openai.RateLimitError, match=r"router\.queue_timeout_s=0\.3 s"):
            ask(client)
        assert busy.result(timeout=10)[0] == "a"


def whole_stream(client: openai.OpenAI) -> None:
    result = stream_text(client)
    if result["end"] != "stop":
        raise AssertionError(f"a stream ended badly: {result}")


def wait_log(gateway: Gateway, text: str, after: int = 0, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.log()[after:]:
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.05)


def test_reloads_during_load_lose_no_request(tmp_path: Path) -> None:
    with (
        fake("a", itl_ms=30, tokens=10) as a,
        fake("b", itl_ms=30, tokens=10) as b,
        run_gateway(tmp_path, config(member(a, "a"))) as gw,
    ):
        client = sdk(gw)
        with (
            load(lambda: ask(client), threads=3) as plain,
            load(lambda: whole_stream(client), threads=3) as streams,
        ):
            a.wait_stats(lambda s: s["completed"] >= 10)
            mark = len(gw.log())
            write_config(gw, config(member(a, "a"), member(b, "b")))  # the file watch
            wait_log(gw, "config reloaded", mark)
            b.wait_stats(lambda s: s["completed"] >= 10)
            write_config(gw, config(member(a, "a", weight=-1)))  # refused: weight must be > 0
            wait_log(gw, "refused, keeping the running config", mark)
            b.wait_stats(lambda s: s["completed"] >= 20)  # still both members
            mark = len(gw.log())
            write_config(gw, config(member(b, "b")))
            gw.running.process.send_signal(signal.SIGHUP)
            wait_log(gw, "config reloaded (SIGHUP)", mark)
            wait_log(gw, "upstream a removed", mark)
            a.reset()
            b.wait_stats(lambda s: s["completed"] >= 40, timeout=60)
        assert plain.errors == []
        assert streams.errors == []
        assert plain.done > 20
        assert streams.done > 20
        assert a.stats()["requests"] == 0  # a is out of the pool
        assert [u["name"] for u in health_of(gw)[1]["upstreams"]] == ["b"]


def test_a_client_that_hangs_up_cancels_its_non_streamed_call(tmp_path: Path) -> None:
    with (
        fake("a", hang=True) as a,  # answers nothing until its client goes
        run_gateway(tmp_path, config(member(a, "a", max_concurrency=1))) as gw,
    ):
        with pytest.raises(openai.APITimeoutError):
            ask(sdk(gw, timeout=0.5))
        a.wait_stats(lambda s: s["cancelled"] == 1 and s["in_flight"] == 0)
        freed = wait_member(gw, "a", lambda m: m["outstanding"] == 0)
        assert freed["failures"] == 0  # the client left; the member did nothing wrong
        assert '"outcome": "client_disconnected"' in gw.log()
