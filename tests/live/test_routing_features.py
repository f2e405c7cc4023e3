"""Routing features end to end: a real `enclave serve` in front of real fake upstreams.

Metrics, usage in streams, pass-through of engine extras, model discovery, Ollama-style
health checks, the ``/health`` report and its secrets, routing headers and affinity, and
``enclave upstreams``. The main gateway and its fakes are shared by the module; each test
puts the fakes' options back and zeroes their counters first (the ``fakes`` fixture).
The gateway whose members get killed has its own fakes (the ``pair`` fixture).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.fake_upstream import extras_header
from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import ENCLAVE, Gateway, health_of, run_gateway, wait_member

KEY_A = "sk-enclave-test-a-5f0c1e9d2b"
KEY_B = "sk-enclave-test-b-83a7d4c610"
KEY_ENV = "ENCLAVE_TEST_ROUTING_UPSTREAM_KEY"
NO_ENGINE = {"enabled": False, "embeddings": False, "ocr": False}
CHAT = "/v1/chat/completions"
MASK = "**********"  # how pydantic shows a SecretStr
MEMBERS = ("a", "b", "solo", "nousage", "capped", "disc", "aliased", "ollama")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def healthy(member: dict[str, Any]) -> bool:
    return bool(member["state"] == "healthy" and member["breaker"] == "closed")


def unhealthy(member: dict[str, Any]) -> bool:
    return bool(member["state"] == "unhealthy")


def poll(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Call ``check`` until it returns something truthy; that is returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def sse(
    gateway: Gateway, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Headers, list[dict[str, Any]]]:
    """A streamed call with httpx: the response headers and every chunk before [DONE]."""
    url = gateway.v1 + "/chat/completions"
    with httpx.stream(
        "POST", url, json=body, headers=headers, trust_env=False, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return response.headers, [json.loads(item) for item in data[:-1]]


def scrape(gateway: Gateway) -> Samples:
    """Every sample of ``/metrics``, parsed: (sample name, labels) -> value."""
    reply = httpx.get(gateway.url + "/metrics", trust_env=False, timeout=5)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def has(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENCLAVE, *args], env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


# -- the main gateway -----------------------------------------------------------------------


# What each fake upstream is started with; several members may share one fake.
FAKES: dict[str, dict[str, Any]] = {
    "a": {"models": ["m"], "api_key": KEY_A},
    "b": {"models": ["m"], "api_key": KEY_B},
    # behind three members: solo (meter, plain), nousage (nu, stream_usage off) and
    # capped (cap, one request at a time)
    "solo": {"models": ["meter", "plain", "nu", "cap"]},
    # behind two members that declare no models: disc, and aliased (pub -> x)
    "disc": {"models": ["x", "y"]},
    # like Ollama: no /health, and stream_options.include_usage ignored
    "ollama": {"models": ["ol"], "no_health": True, "no_stream_usage": True},
}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    """The main gateway's fakes, by name (each fake's ``name`` is that name too)."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(run_fake_upstream(name=name, **options))
            for name, options in FAKES.items()
        }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("home")
    (path / "b.key").write_text(KEY_B + "\n")
    return path


@pytest.fixture(scope="module")
def gateway(home: Path, upstreams: dict[str, FakeUpstream]) -> Iterator[Gateway]:
    url = {name: fake.base_url for name, fake in upstreams.items()}
    config = {
        "engine": NO_ENGINE,
        "router": {"health_interval_s": 0.2, "health_timeout_s": 2.0, "affinity": "conversation"},
        "upstreams": [
            {"name": "a", "base_url": url["a"], "models": ["m"], "api_key_env": KEY_ENV},
            {"name": "b", "base_url": url["b"], "models": ["m"],
             "api_key_file": str(home / "b.key")},
            {"name": "solo", "base_url": url["solo"], "models": ["meter", "plain"]},
            {"name": "nousage", "base_url": url["solo"], "models": ["nu"], "stream_usage": False},
            {"name": "capped", "base_url": url["solo"], "models": ["cap"], "max_concurrency": 1},
            {"name": "disc", "base_url": url["disc"]},
            {"name": "aliased", "base_url": url["disc"], "aliases": {"pub": "x"}},
            {"name": "ollama", "base_url": url["ollama"]},
        ],
    }  # fmt: skip
    with run_gateway(home, config, env={KEY_ENV: KEY_A}) as running:
        yield running


@pytest.fixture
def fakes(gateway: Gateway, upstreams: dict[str, FakeUpstream]) -> dict[str, FakeUpstream]:
    """The main gateway's fakes by name, options restored and counters zeroed."""
    for fake in upstreams.values():
        fake.restore()
        fake.reset()
    return upstreams


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="client-key", max_retries=0)


# -- 1. /metrics ----------------------------------------------------------------------------


def test_metrics_count_calls_latency_and_tokens(
    gateway: Gateway, client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    before = scrape(gateway)
    usages = []
    for text, limit in (("alpha", 3), ("alpha beta gamma", 5)):
        reply = client.chat.completions.create(model="meter", messages=user(text), max_tokens=limit)
        assert reply.usage is not None
        assert reply.usage.completion_tokens == limit
        usages.append(reply.usage)
    asked = list(
        client.chat.completions.create(
            model="meter", messages=user("one two"), max_tokens=4, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert asked[-1].usage is not None
    usages.append(asked[-1].usage)
    # The client does not ask for usage: the gateway does, and counts it all the same
    # (the request is the second one again, so its usage is the second one's).
    unasked = list(
        client.chat.completions.create(
            model="meter", messages=user("alpha beta gamma"), max_tokens=5, stream=True
        )
    )
    assert all(chunk.usage is None for chunk in unasked)
    usages.append(usages[1])
    fakes["solo"].configure(fail_times=1, fail_status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="meter", messages=user("refused"))

    call = {"route": CHAT, "model": "meter", "member": "solo"}

    def settled() -> Samples | None:
        now = scrape(gateway)
        done = value(now, "enclave_requests_total", **call, status="200")
        failed = value(now, "enclave_requests_total", **call, status="400")
        ok = done - value(before, "enclave_requests_total", **call, status="200") == 4
        refused = failed - value(before, "enclave_requests_total", **call, status="400") == 1
        return now if ok and refused else None

    after = poll(settled, "the five calls counted in /metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    streams = {"model": "meter", "member": "solo"}
    assert delta("enclave_time_to_first_token_seconds_count", **streams) == 2
    assert delta("enclave_time_to_first_token_seconds_bucket", **streams, le="+Inf") == 2
    assert delta("enclave_request_duration_seconds_count", **call) == 5
    assert delta("enclave_request_duration_seconds_sum", **call) > 0
    assert delta("enclave_queue_wait_seconds_count", model="meter") == 5
    tokens_in = sum(usage.prompt_tokens for usage in usages)
    tokens_out = sum(usage.completion_tokens for usage in usages)
    assert tokens_out == 3 + 5 + 4 + 5
    assert delta("enclave_tokens_total", **streams, direction="in") == tokens_in
    assert delta("enclave_tokens_total", **streams, direction="out") == tokens_out

    assert value(after, "enclave_upstream_healthy", member="solo") == 1
    breaker = {
        state: value(after, "enclave_upstream_breaker_state", member="solo", state=state)
        for state in ("closed", "half_open", "open")
    }
    assert breaker == {"closed": 1, "half_open": 0, "open": 0}
    assert has(after, "enclave_pool_queued", model="meter", kind="chat")
    assert value(after, "enclave_pool_queued", model="meter", kind="chat") == 0
    for member in MEMBERS:
        assert has(after, "enclave_upstream_healthy", member=member), member


def post_chat(gateway: Gateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.v1 + "/chat/completions", json=body, trust_env=False, timeout=30)


def waiting(gateway: Gateway, pool: dict[str, str]) -> Samples | None:
    """The metrics, once one request waits in the queue of ``pool``."""
    samples = scrape(gateway)
    return samples if value(samples, "enclave_pool_queued", **pool) == 1 else None


def test_a_queued_request_shows_in_metrics_health_and_headers(
    gateway: Gateway, fakes: dict[str, FakeUpstream]
) -> None:
    solo = fakes["solo"]
    queued = {"model": "cap", "kind": "chat"}
    before = scrape(gateway)
    body = {"model": "cap", "messages": user("wait for it"), "max_tokens": 2}
    solo.configure(hang=True)
    with ThreadPoolExecutor(2) as threads:
        try:  # let the held request go before the pool waits for its threads
            first = threads.submit(post_chat, gateway, body)
            solo.wait_stats(lambda stats: stats["in_flight"] == 1)
            second = threads.submit(post_chat, gateway, body)
            now = poll(lambda: waiting(gateway, queued), "the second request queued")
            assert value(now, "enclave_upstream_in_flight", member="capped") == 1
            status, health = health_of(gateway)
            assert status == 200
            pool = next(p for p in health["pools"] if p["model"] == "cap")
            assert (pool["queued"], pool["available"]) == (1, 1)
            capped = next(u for u in health["upstreams"] if u["name"] == "capped")
            assert (capped["outstanding"], capped["max_concurrency"]) == (1, 1)
            assert solo.stats()["requests"] == 1  # the second one never left the gateway
        finally:
            solo.configure(hang=False)
        replies = [first.result(), second.result()]
    assert [reply.status_code for reply in replies] == [200, 200]
    assert [reply.headers["x-enclave-upstream"] for reply in replies] == ["capped", "capped"]
    assert float(replies[1].headers["x-enclave-queue-ms"]) > 0
    assert solo.stats()["max_in_flight"] == 1

    def settled() -> Samples | None:
        got = scrape(gateway)
        count = "enclave_queue_wait_seconds_count"
        done = value(got, count, model="cap") - value(before, count, model="cap") == 2
        return got if done else None

    after = poll(settled, "both calls counted")
    assert value(after, "enclave_pool_queued", **queued) == 0
    waited = value(after, "enclave_queue_wait_seconds_sum", model="cap")
    assert waited - value(before, "enclave_queue_wait_seconds_sum", model="cap") > 0


# -- 2. usage in streams --------------------------------------------------------------------


def test_usage_only_for_clients_that_ask(gateway: Gateway, fakes: dict[str, FakeUpstream]) -> None:
    solo = fakes["solo"]
    body = {"model": "plain", "messages": user("count me"), "max_tokens": 6, "stream": True}

    _, chunks = sse(gateway, body)
    assert chunks
    assert all("usage" not in chunk for chunk in chunks), chunks
    assert all(chunk["choices"] for chunk in chunks)
    assert solo.stats()["last_request"]["stream_options"] == {"include_usage": True}

    _, chunks = sse(gateway, body | {"stream_options": {"include_usage": False}})
    assert all("usage" not in chunk for chunk in chunks), chunks
    assert solo.stats()["last_request"]["stream_options"] == {"include_usage": True}

    _, chunks = sse(gateway, body | {"stream_options": {"include_usage": True}})
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 6
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 6
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert solo.stats()["last_request"]["stream_options"] == {"include_usage": True}


def test_upstream_without_stream_usage_gets_no_stream_options(
    gateway: Gateway, fakes: dict[str, FakeUpstream]
) -> None:
    solo = fakes["solo"]
    body = {"model": "nu", "messages": user("no usage"), "max_tokens": 3, "stream": True}

    _, chunks = sse(gateway, body)
    sent = solo.stats()["last_request"]
    assert sent["model"] == "nu"
    assert "stream_options" not in sent
    assert all("usage" not in chunk for chunk in chunks)

    # What a client asks for itself still goes through, and so does the answer.
    _, chunks = sse(gateway, body | {"stream_options": {"include_usage": True}})
    assert solo.stats()["last_request"]["stream_options"] == {"include_usage": True}
    assert chunks[-1]["usage"]["completion_tokens"] == 3


# -- 3. engine extras -----------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
    "required": ["answer"],
}
EXTRAS: dict[str, Any] = {
    "top_k": 20,
    "repetition_penalty": 1.05,
    "min_p": 0.05,
    "guided_json": SCHEMA,
    "structured_outputs": {"json": SCHEMA},
    "chat_template_kwargs": {"enable_thinking": False},
}
RESPONSE_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
}


def test_engine_extras_pass_through_unchanged(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    solo = fakes["solo"]
    messages = user("reply in JSON 中文")
    sent = {"model": "plain", "messages": messages, "response_format": RESPONSE_FORMAT, **EXTRAS}

    reply = client.chat.completions.create(
        model="plain", messages=messages, response_format=RESPONSE_FORMAT, extra_body=EXTRAS
    )
    assert reply.choices[0].message.content
    arrived = solo.stats()["last_request"]
    assert arrived == sent
    # What the fake puts in x-fake-extras for it (the gateway does not relay that header).
    assert extras_header(arrived) == {"x-fake-extras": ",".join(sorted(EXTRAS))}

    chunks = list(
        client.chat.completions.create(
            model="plain", messages=messages, response_format=RESPONSE_FORMAT,
            extra_body=EXTRAS, stream=True,
        )
    )  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed = sent | {"stream": True, "stream_options": {"include_usage": True}}
    assert solo.stats()["last_request"] == streamed
    assert solo.stats()["requests"] == 2


# -- 4. discovery ---------------------------------------------------------------------------


def listed(gateway: Gateway) -> set[str]:
    reply = httpx.get(gateway.v1 + "/models", trust_env=False, timeout=5)
    assert reply.status_code == 200
    return {card["id"] for card in reply.json()["data"]}


def test_discovered_models_are_served(
    gateway: Gateway, client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    disc = fakes["disc"]
    ids = poll(lambda: (found := listed(gateway)) >= {"x", "y", "pub"} and found, "discovery")
    assert {"m", "meter", "plain", "nu", "ol"} <= ids

    raw = client.chat.completions.with_raw_response.create(model="x", messages=user("hi x"))
    assert raw.headers["x-enclave-upstream"] == "disc"
    assert raw.parse().model == "x"
    assert disc.stats()["last_request"]["model"] == "x"

    member = wait_member(gateway, "disc", lambda m: m["models"] == ["x", "y"])
    assert member["state"] == "healthy"


def test_alias_over_a_discovering_upstream(
    gateway: Gateway, client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    disc = fakes["disc"]
    poll(lambda: "pub" in listed(gateway), "pub listed")

    raw = client.chat.completions.with_raw_response.create(model="pub", messages=user("hi pub"))
    assert raw.headers["x-enclave-upstream"] == "aliased"
    assert raw.parse().model == "pub"
    assert disc.stats()["last_request"]["model"] == "x"

    chunks = list(client.chat.completions.create(model="pub", messages=user("s"), stream=True))
    assert {chunk.model for chunk in chunks} == {"pub"}
    assert disc.stats()["last_request"]["model"] == "x"

    aliased = wait_member(gateway, "aliased", healthy)
    assert "pub" in aliased["models"]
    assert "x" not in aliased["models"]


# -- 5. an Ollama-style upstream ------------------------------------------------------------


def test_upstream_without_health_route_is_checked_by_its_models(
    gateway: Gateway, client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    ollama = fakes["ollama"]
    assert httpx.get(ollama.root + "/health", trust_env=False).status_code == 404
    ollama.wait_stats(lambda stats: stats["health_checks"] >= 2)
    # Its model is known only from a health check that passed.
    member = wait_member(gateway, "ollama", lambda m: healthy(m) and m["models"] == ["ol"])
    assert member["last_error"] == ""
    assert "upstream ollama failed" not in gateway.log()

    raw = client.chat.completions.with_raw_response.create(model="ol", messages=user("llama"))
    assert raw.headers["x-enclave-upstream"] == "ollama"
    assert (raw.parse().choices[0].message.content or "").startswith("echo: llama")
    assert ollama.stats()["completed"] == 1

    # It ignores stream_options.include_usage: streams still end well, without usage.
    body = {"model": "ol", "messages": user("stream"), "max_tokens": 4, "stream": True}
    headers, chunks = sse(gateway, body | {"stream_options": {"include_usage": True}})
    assert headers["x-enclave-upstream"] == "ollama"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    _, chunks = sse(gateway, body)
    assert ollama.stats()["last_request"]["stream_options"] == {"include_usage": True}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert ollama.stats()["completed"] == 3


# -- 6. /health and secrets -----------------------------------------------------------------

POOL_KEYS = {"model", "kind", "members", "available", "queued"}
MEMBER_KEYS = {
    "name", "base_url", "state", "breaker", "outstanding", "max_concurrency", "weight",
    "models", "served", "failures", "last_error",
}  # fmt: skip


def test_health_report_shape(gateway: Gateway, fakes: dict[str, FakeUpstream]) -> None:
    wait_member(gateway, "ollama", lambda m: m["models"] == ["ol"])
    poll(lambda: listed(gateway) >= {"x", "y", "pub"}, "discovery")
    status, body = health_of(gateway)
    assert status == 200
    assert body["status"] == "ok"
    assert body["version"]

    pools = {(pool["model"], pool["kind"]): pool for pool in body["pools"]}
    for pool in pools.values():
        assert set(pool) >= POOL_KEYS, pool
    pool_m = pools["m", "chat"]
    assert sorted(pool_m["members"]) == ["a", "b"]
    assert pool_m["available"] == 2
    assert pool_m["queued"] == 0
    assert pools["x", "chat"]["members"] == ["disc"]
    assert pools["pub", "chat"]["members"] == ["aliased"]

    members = {member["name"]: member for member in body["upstreams"]}
    assert set(members) == set(MEMBERS)
    for member in members.values():
        assert set(member) >= MEMBER_KEYS, member
    a = members["a"]
    assert a["base_url"] == fakes["a"].base_url
    assert (a["state"], a["breaker"], a["outstanding"]) == ("healthy", "closed", 0)
    assert (a["max_concurrency"], a["weight"], a["models"]) == (0, 1.0, ["m"])
    assert isinstance(a["served"], int)
    assert (a["failures"], a["last_error"]) == (0, "")
    assert members["nousage"]["models"] == ["nu"]
    assert members["solo"]["models"] == ["meter", "plain"]


def test_upstream_keys_are_used_and_never_shown(
    gateway: Gateway, home: Path, fakes: dict[str, FakeUpstream]
) -> None:
    fake_a, fake_b = fakes["a"], fakes["b"]
    # Both fakes want their key on /v1/models too: healthy members prove it is sent.
    for fake in (fake_a, fake_b):
        fake.wait_stats(lambda stats: stats["health_checks"] >= 1)
    for name in ("a", "b"):
        assert wait_member(gateway, name, healthy)["last_error"] == ""
    conversation = 0
    while not (fake_a.stats()["requests"] and fake_b.stats()["requests"]):
        reply = httpx.post(
            gateway.v1 + "/chat/completions",
            json={"model": "m", "messages": user("key?")},
            headers={"X-Enclave-Conversation": f"k{conversation}", "Authorization": "Bearer c"},
            trust_env=False, timeout=10,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        conversation += 1
        assert conversation < 64
    assert fake_a.stats()["last_headers"]["authorization"] == f"Bearer {KEY_A}"
    assert fake_b.stats()["last_headers"]["authorization"] == f"Bearer {KEY_B}"

    shown = {
        "/health": httpx.get(gateway.url + "/health", trust_env=False).text,
        "/metrics": httpx.get(gateway.url + "/metrics", trust_env=False).text,
    }
    config = home / "enclave.yaml"
    env = {"ENCLAVE_HOME": str(home), KEY_ENV: KEY_A}
    for extra in ((), ("--json",)):
        done = run_cli("--config", str(config), "config", "show", *extra, env=env)
        assert done.returncode == 0, done.stderr
        shown[f"config show {extra}"] = done.stdout + done.stderr
    settings = json.loads(shown["config show ('--json',)"].strip())
    keys = {u["name"]: u["api_key"] for u in settings["upstreams"]}
    assert keys["a"] == keys["b"] == MASK
    assert keys["solo"] is None
    shown["gateway log"] = gateway.log()
    shown["access.log"] = (home / "logs" / "access.log").read_text()
    for where, text in shown.items():
        assert KEY_A not in text, where
        assert KEY_B not in text, where


# -- 7. routing headers and affinity --------------------------------------------------------


def test_routing_headers_name_the_member(
    gateway: Gateway, client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    for index in range(4):
        text = f"which member {index}"
        raw = client.chat.completions.with_raw_response.create(model="m", messages=user(text))
        member = raw.headers["x-enclave-upstream"]
        assert member in {"a", "b"}
        assert float(raw.headers["x-enclave-queue-ms"]) >= 0
        assert fakes[member].stats()["last_request"]["messages"] == user(text)
        assert (raw.parse().choices[0].message.content or "").startswith(f"echo: {text}")

    headers, chunks = sse(gateway, {"model": "m", "messages": user("streamed"), "stream": True})
    member = headers["x-enclave-upstream"]
    assert member in {"a", "b"}
    assert float(headers["x-enclave-queue-ms"]) >= 0
    assert fakes[member].stats()["last_request"]["messages"] == user("streamed")
    assert chunks
    total = fakes["a"].stats()["requests"] + fakes["b"].stats()["requests"]
    assert total == 5


def test_conversation_affinity_keeps_a_conversation_on_one_member(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    def member_for(conversation: str) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="m",
            messages=user("again"),
            extra_headers={"X-Enclave-Conversation": conversation},
        )
        return raw.headers["x-enclave-upstream"]

    kept = {member_for("c1") for _ in range(10)}
    assert len(kept) == 1
    (member,) = kept
    other = "b" if member == "a" else "a"
    assert fakes[member].stats()["requests"] == 10
    assert fakes[other].stats()["requests"] == 0

    spread = {member_for(f"conversation-{index}") for index in range(16)}
    assert spread == {"a", "b"}

    # Without the header, the OpenAI ``user`` field names the conversation.
    users = set()
    for _ in range(5):
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=user("as a user"), user="alice"
        )
        users.add(raw.headers["x-enclave-upstream"])
    assert len(users) == 1


# -- 6 and 8: a gateway whose members die ---------------------------------------------------


@pytest.fixture(scope="module")
def p1() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=["one"], name="p1") as upstream:
        yield upstream


@pytest.fixture(scope="module")
def p2() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=["two"], name="p2") as upstream:
        yield upstream


@pytest.fixture(scope="module")
def pair_gateway(
    tmp_path_factory: pytest.TempPathFactory, p1: FakeUpstream, p2: FakeUpstream
) -> Iterator[Gateway]:
    config = {
        "engine": NO_ENGINE,
        "router": {"health_interval_s": 0.2, "health_timeout_s": 1.0},
        "upstreams": [
            {"name": "p1", "base_url": p1.base_url, "models": ["one"]},
            {"name": "p2", "base_url": p2.base_url, "models": ["two"]},
        ],
    }
    with run_gateway(tmp_path_factory.mktemp("pair"), config) as running:
        yield running


@pytest.fixture
def pair(
    pair_gateway: Gateway, p1: FakeUpstream, p2: FakeUpstream
) -> Iterator[tuple[Gateway, FakeUpstream, FakeUpstream]]:
    """Both members healthy before the test, and again after it (killed ones restarted)."""
    for name in ("p1", "p2"):
        wait_member(pair_gateway, name, healthy)
    yield pair_gateway, p1, p2
    for fake in (p1, p2):
        if fake.process.poll() is not None:
            fake.restart()
    for name in ("p1", "p2"):
        wait_member(pair_gateway, name, healthy)


def test_health_goes_ok_degraded_unavailable(
    pair: tuple[Gateway, FakeUpstream, FakeUpstream],
) -> None:
    gateway, p1, p2 = pair
    status, body = health_of(gateway)
    assert (status, body["status"]) == (200, "ok")

    p2.kill()
    wait_member(gateway, "p2", unhealthy)
    status, body = health_of(gateway)
    assert (status, body["status"]) == (200, "degraded")
    pools = {pool["model"]: pool for pool in body["pools"]}
    assert (pools["one"]["available"], pools["two"]["available"]) == (1, 0)
    dead = next(u for u in body["upstreams"] if u["name"] == "p2")
    assert dead["last_error"]
    reply = httpx.post(
        gateway.v1 + "/chat/completions", json={"model": "one", "messages": user("still")},
        trust_env=False, timeout=10,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text

    p1.kill()
    wait_member(gateway, "p1", unhealthy)
    reply = httpx.get(gateway.url + "/health", trust_env=False, timeout=5)
    assert reply.status_code == 503
    assert reply.json()["status"] == "unavailable"
    assert int(reply.headers["retry-after"]) >= 1
    assert [pool["available"] for pool in reply.json()["pools"]] == [0, 0]


def test_upstreams_cli_exit_codes(
    pair: tuple[Gateway, FakeUpstream, FakeUpstream], tmp_path: Path
) -> None:
    gateway, p1, p2 = pair
    env = {"ENCLAVE_HOME": str(tmp_path)}
    done = run_cli("upstreams", "--url", gateway.url, env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["p1"][1:3] == ["healthy", "closed"]
    assert rows["p2"][1:3] == ["healthy", "closed"]
    assert ": ok" in done.stdout.splitlines()[0]

    p2.kill()
    wait_member(gateway, "p2", unhealthy)
    done = run_cli("upstreams", "--url", gateway.url, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["p1"][1] == "healthy"
    assert rows["p2"][1] == "unhealthy"
    assert ": degraded" in done.stdout.splitlines()[0]

    p1.kill()
    wait_member(gateway, "p1", unhealthy)
    done = run_cli("upstreams", "--url", gateway.url, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ": unavailable" in done.stdout.splitlines()[0]
