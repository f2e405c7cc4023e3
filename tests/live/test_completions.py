"""``POST /v1/completions`` (the legacy text completion) through a real gateway, relayed to
real fake upstreams like chat: keys and their model scope, aliases, bounds named in the
errors, streaming with usage, a retry before the first byte, metrics, access log, audit,
and the stock vLLM quickstart curl unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, add_user, audit_records, cli, run_gateway

FAKE = "fake-model"
QWEN = "Qwen/Qwen2.5-1.5B-Instruct"  # the vLLM quickstart's model, an alias here
CONTEXT = 512
pytestmark = pytest.mark.fake_upstream(models=[FAKE], tokens=8, context_length=CONTEXT)


@dataclass
class Site:
    gateway: Gateway
    main: FakeUpstream  # weighted so that it takes every first attempt
    spare: FakeUpstream
    key: str  # may use every model
    narrow: str  # may use only other-*


def new_key(gateway: Gateway, name: str, *args: str) -> str:
    made = cli(gateway, "keys", "create", "--user", "ann", "--name", name, *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0].strip()


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with run_fake_upstream(models=[FAKE], tokens=8, context_length=CONTEXT, name="spare") as spare:
        member = {"models": [FAKE], "aliases": {QWEN: FAKE}, "context_length": CONTEXT}
        config = {
            "auth": {"mode": "on"},
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "limits": {"max_completion_prompts": 3, "max_body_bytes": "64KiB"},
            "audit": {"content": "full"},
            "upstreams": [
                {"name": "main", "base_url": fake.base_url, "weight": 1000, **member},
                {"name": "spare", "base_url": spare.base_url, "weight": 0.001, **member},
            ],
            "assistants": [{"name": "helper", "model": FAKE, "memory": "off"}],
        }
        with run_gateway(tmp_path_factory.mktemp("completions"), config) as gateway:
            add_user(gateway, "ann", "user", "ann-password-long")
            key, narrow = new_key(gateway, "all"), new_key(gateway, "narrow", "--models", "other-*")
            yield Site(gateway, fake, spare, key, narrow)


@pytest.fixture
def client(site: Site) -> Iterator[openai.OpenAI]:
    site.main.reset()
    site.spare.reset()
    yield openai.OpenAI(base_url=site.gateway.v1, api_key=site.key, max_retries=0)
    site.main.restore()


def post(site: Site, body: Any, key: str | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key or site.key}", "Content-Type": "application/json"}
    return httpx.post(site.gateway.v1 + "/completions", content=content, headers=headers,
                      trust_env=False, timeout=30)  # fmt: skip


def error_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


def test_a_prompt_is_completed_by_the_pool_with_usage_and_routing_headers(
    client: openai.OpenAI, site: Site
) -> None:
    raw = client.completions.with_raw_response.create(
        model=FAKE,
        prompt="San Francisco is a",
        max_tokens=7,
        temperature=0,
        extra_body={"top_k": 3},
    )
    done = raw.parse()
    assert done.object == "text_completion"
    assert done.model == FAKE
    assert done.choices[0].text == "echo: San Francisco is a t6 t7"
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None
    assert done.usage.completion_tokens == 7
    assert raw.headers["x-enclave-upstream"] == "main"
    sent = site.main.stats()["last_request"]
    assert sent["prompt"] == "San Francisco is a"
    assert sent["top_k"] == 3


def test_a_stream_relays_text_chunks_and_the_usage_only_when_asked(
    client: openai.OpenAI, site: Site
) -> None:
    chunks = list(client.completions.create(model=FAKE, prompt="one two", max_tokens=5,
                                             stream=True))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: one two t4 t5"
    assert all(c.usage is None for c in chunks)  # the gateway asked for it, and kept it
    assert {c.model for c in chunks} == {FAKE}
    asked = list(client.completions.create(model=FAKE, prompt="x", max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}))  # fmt: skip
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert asked[-1].usage.completion_tokens == 3


def test_an_alias_names_the_upstream_model_and_the_answer_keeps_the_alias(
    client: openai.OpenAI, site: Site
) -> None:
    done = client.completions.create(model=QWEN, prompt="hi", max_tokens=2)
    assert done.model == QWEN
    assert site.main.stats()["last_request"]["model"] == FAKE
    chunks = list(client.completions.create(model=QWEN, prompt="hi", max_tokens=2, stream=True))
    assert {c.model for c in chunks} == {QWEN}


def test_a_batch_of_prompts_and_token_ids_get_a_choice_each(client: openai.OpenAI) -> None:
    done = client.completions.create(model=FAKE, prompt=["a", "b c"], max_tokens=4)
    assert [(c.index, c.text) for c in done.choices] == [(0, "echo: a t3 t4"), (1, "echo: b c t4")]
    ids = client.completions.create(model=FAKE, prompt=[[1, 2, 3], [4]], max_tokens=2)
    assert [c.text for c in ids.choices] == ["echo: ids=3", "echo: ids=1"]


def test_an_assistant_is_refused_naming_the_chat_route(site: Site) -> None:
    error = error_of(post(site, {"model": "assistant/helper", "prompt": "hi"}), 400)
    assert "/v1/chat/completions" in error["message"]
    assert error["param"] == "model"


def test_the_keys_model_scope_applies(site: Site) -> None:
    assert error_of(post(site, {"model": FAKE, "prompt": "hi"}, site.narrow), 403)
    assert error_of(post(site, {"model": FAKE, "prompt": "hi"}, "sk-wrong"), 401)


def test_bounds_are_refused_before_any_upstream_naming_the_limit(site: Site) -> None:
    site.main.reset()
    many = error_of(post(site, {"model": FAKE, "prompt": ["a", "b", "c", "d"]}), 400)
    assert "limits.max_completion_prompts" in many["message"]
    assert many["param"] == "prompt"
    long = error_of(post(site, {"model": FAKE, "prompt": "a", "max_tokens": CONTEXT}), 400)
    assert long["code"] == "context_length_exceeded"
    assert long["param"] == "max_tokens"
    ids = {"model": FAKE, "prompt": list(range(CONTEXT - 4)), "max_tokens": 5}
    over = error_of(post(site, ids), 400)
    assert over["code"] == "context_length_exceeded"
    assert str(CONTEXT) in over["message"]
    big = error_of(post(site, {"model": FAKE, "prompt": "x" * 70_000}), 413)
    assert "limits.max_body_bytes" in big["message"]
    for bad in ({"model": FAKE}, {"model": FAKE, "prompt": []}, {"model": FAKE, "prompt": [[]]}):
        assert error_of(post(site, bad), 400)["type"] == "invalid_request_error"
    assert error_of(post(site, {"model": "nope", "prompt": "x"}), 404)["param"] == "model"
    assert site.main.stats()["requests"] == 0


def test_a_failed_first_attempt_is_retried_on_another_member(
    client: openai.OpenAI, site: Site
) -> None:
    site.main.configure(fail_times=1)
    raw = client.completions.with_raw_response.create(model=FAKE, prompt="hi", max_tokens=2)
    assert raw.headers["x-enclave-upstream"] == "spare"
    site.main.configure(fail_times=1)
    chunks = list(client.completions.create(model=FAKE, prompt="hi", max_tokens=2, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: hi"
    assert (site.main.stats()["requests"], site.spare.stats()["requests"]) == (2, 2)


def test_a_stream_that_fails_midway_ends_with_an_error_event(site: Site) -> None:
    site.main.configure(error_after=2)
    try:
        body = {"model": FAKE, "prompt": "a b c d", "max_tokens": 6, "stream": True}
        reply = post(site, body)
    finally:
        site.main.restore()
    events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["type"] == "upstream_error"
    assert "[DONE]" not in events


def test_metrics_access_log_and_audit_record_the_call(site: Site) -> None:
    reply = post(site, {"model": QWEN, "prompt": "audited prompt", "max_tokens": 3})
    request_id = reply.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while request_id not in site.gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in site.gateway.log().splitlines() if request_id in line]
    assert lines, f"no access-log line for request {request_id} within 10 s"
    line = lines[0]
    logged = json.loads(line[line.index("{") :])
    member = reply.headers["x-enclave-upstream"]
    assert (logged["path"], logged["model"], logged["upstream"]) == (
        "/v1/completions",
        QWEN,
        member,
    )
    metrics = httpx.get(site.gateway.url + "/metrics", trust_env=False,
                        headers={"Authorization": f"Bearer {site.key}"}).text  # fmt: skip
    assert 'route="/v1/completions"' in metrics
    record = next(r for r in reversed(audit_records(site.gateway))
                  if r["action"] == "POST /v1/completions" and r["status"] == 200)  # fmt: skip
    assert record["model"] == QWEN
    assert record["tokens_out"] == 3
    assert json.loads(record["content"]) == "audited prompt"


def test_the_stock_vllm_quickstart_curl_works_unchanged(site: Site) -> None:
    """vLLM's quickstart, word for word, but for the key a gateway with auth wants."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(
        ["curl", "-s", site.gateway.url + "/v1/completions",
         "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {site.key}",
         "-d", json.dumps({"model": QWEN, "prompt": "San Francisco is a", "max_tokens": 7,
                           "temperature": 0})],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    assert answer["model"] == QWEN
    assert answer["choices"][0]["text"].startswith("echo: San Francisco is a")
