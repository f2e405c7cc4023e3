"""Corners of routing: a retry reaches an idle standby past queued plain
callers, /v1/completions bounds its generations, the stream renaming decision reads the
first event's JSON, and a fallback of the other kind is refused at load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from enclave import sse
from enclave.config import LimitsSettings, load_settings
from enclave.errors import ConfigError, InvalidRequest
from enclave.gateway.calls import OpenedStream, as_event, first_event
from enclave.gateway.chat.relay import names_other_model, relay
from enclave.gateway.completions import check_prompts
from enclave.router import CallRecord
from enclave.router.router import Spec
from tests.unit.test_completions import pool, request
from tests.unit.test_router import Scripted, member
from tests.unit.test_standby import config, pool_router, router_of

# --- a retry may take the standby that queued plain callers may not --------------------


@pytest.mark.anyio
async def test_a_retry_takes_the_idle_standby_past_a_queued_plain_caller() -> None:
    primary = member(Scripted("p"), max_concurrency=1)
    router = pool_router(primary, member(Scripted("s"), standby=True), queue_size=1)
    pool_ = router.resolve("m", "chat")
    held = await pool_.acquire()
    plain = asyncio.ensure_future(pool_.acquire())  # waits for the busy primary
    await asyncio.sleep(0)
    assert len(pool_.waiters) == 1
    retry = await pool_.acquire(["p"])  # the queue is full, yet the standby is idle
    assert retry.member.name == "s"
    held.done(True)
    assert (await plain).member is primary


@pytest.mark.anyio
async def test_a_freed_standby_goes_to_a_queued_retry_behind_a_plain_caller() -> None:
    primary = member(Scripted("p"), max_concurrency=1)
    standby = member(Scripted("s"), standby=True, max_concurrency=1)
    router = pool_router(primary, standby)
    pool_ = router.resolve("m", "chat")
    held, on_standby = await pool_.acquire(), await pool_.acquire(["p"])
    plain = asyncio.ensure_future(pool_.acquire())
    await asyncio.sleep(0)
    retry = asyncio.ensure_future(pool_.acquire(["p"]))
    await asyncio.sleep(0)
    assert len(pool_.waiters) == 2
    on_standby.done(True)  # the plain caller still cannot be served; the retry can
    assert (await asyncio.wait_for(retry, 5)).member is standby
    assert not plain.done()
    held.done(True)
    assert (await plain).member is primary


# --- /v1/completions: prompts x max(n, best_of) is bounded -----------------------------


def test_prompts_times_n_or_best_of_over_the_limit_is_refused_naming_it() -> None:
    limits = LimitsSettings(max_completion_choices=8)
    check_prompts(request(prompt=["a", "b"], n=4), limits, pool())
    check_prompts(request(prompt=["a", "b"], n=2, best_of=4), limits, pool())
    refusal = r"make 10 generations; limits\.max_completion_choices allows 8"
    for fields in ({"n": 5}, {"n": 1, "best_of": 5}):
        with pytest.raises(InvalidRequest, match=refusal):
            check_prompts(request(prompt=["a", "b"], **fields), limits, pool())
    assert LimitsSettings().max_completion_choices == 128


# --- a stream's model, read from its first event's JSON --------------------------------


@pytest.mark.parametrize(
    ("first", "other"),
    [
        ('{"id":"c1","model":"m","choices":[]}', False),
        ('{"id": "c1", "model": "m", "choices": []}', False),  # spaced: still the same model
        ('{"choices":[],"model" :"m"}', False),
        ('{"id":"c1","model":"llama","choices":[]}', True),
        ('{"id":"c1","choices":[]}', True),  # no model named: renamed where chunks name one
        ("not json", True),
    ],
)
def test_renaming_is_decided_from_the_first_events_model(first: str, other: bool) -> None:
    assert names_other_model(first, "m") is other


# --- a fallback of the other kind is refused at load -----------------------------------


def test_a_chat_model_falling_back_to_an_embedding_model_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, {"big": ["multilingual-e5-small"]})
    with pytest.raises(ConfigError, match=r"router\.fallbacks pairs .*big -> multilingual-e5"):
        load_settings(path)


@dataclass
class Upstream:
    """A stream at the I/O seam: these events, then [DONE]."""

    data: list[str]
    headers: dict[str, str] = field(default_factory=dict)

    async def events(self) -> AsyncIterator[sse.Event]:
        for data in [*self.data, sse.DONE_DATA]:
            yield sse.Event(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        for data in [*self.data, sse.DONE_DATA]:
            yield sse.encode(data)

    async def aclose(self) -> None:
        return None


@pytest.mark.anyio
async def test_a_spaced_first_event_naming_the_model_is_relayed_untouched() -> None:
    router = router_of([Spec(member(Scripted("a")), chat={"m": "m"})])
    lease = await router.resolve("m", "chat").acquire()
    chunks = ['{"id": "c1", "model": "m", "choices": []}', '{"id": "c1", "model": "m"}']
    upstream = Upstream(chunks)
    body, frames = upstream.chunks(), sse.Frames()
    found = await first_event(body, frames)
    opened = OpenedStream(upstream, body, frames, as_event(found[0]), found[1:])
    out = relay(opened, lease, CallRecord(model="m"), public="m", started=time.perf_counter(),
                strip_usage=False)  # fmt: skip
    assert [part async for part in out] == [*map(sse.encode, chunks), sse.DONE]
