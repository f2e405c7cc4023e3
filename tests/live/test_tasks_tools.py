"""A remote upstream (vLLM, here the fake) gets ``tools`` as the client sent them, and its
answers come back untouched: the JSON-block reading of tool calls is for the embedded
engine's small models only (tests/engine/test_tasks_tools_engine.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, run_gateway
from tests.live.test_gateway import FAKE, only_upstream

CALL_AS_TEXT = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
TOOLS: list[Any] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeUpstream]]:
    home: Path = tmp_path_factory.mktemp("home")
    with (
        run_fake_upstream(models=[FAKE]) as fake,
        run_gateway(home, only_upstream("vllm", fake.base_url, [FAKE])) as gateway,
    ):
        fake.configure(reply=CALL_AS_TEXT)
        yield gateway, fake


def ask(site: tuple[Gateway, FakeUpstream], **extra: Any) -> Any:
    gateway, _ = site
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    return client.chat.completions.create(
        model=FAKE, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, tool_choice="auto", max_tokens=64, **extra,
    )  # fmt: skip


def test_tools_reach_a_remote_upstream_untouched(site: tuple[Gateway, FakeUpstream]) -> None:
    reply = ask(site)
    sent = site[1].requests()[-1]
    assert sent["tools"] == TOOLS
    assert sent["tool_choice"] == "auto"
    message = reply.choices[0].message
    assert message.content == CALL_AS_TEXT  # not read as a call: not the engine
    assert not message.tool_calls
    assert reply.choices[0].finish_reason != "tool_calls"


def test_a_remote_stream_passes_through_untouched(site: tuple[Gateway, FakeUpstream]) -> None:
    chunks = list(ask(site, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CALL_AS_TEXT
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
