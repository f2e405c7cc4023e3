"""The chat page's conversation sidebar in Chromium, against a real gateway (SQLite):
server-side pages as the list scrolls, server-side search, day groups, rename, export
downloads, delete, and the keyboard. Conversations are written straight into the
gateway's database (dated as each test needs); one is made through the chat API so
that its export has real messages."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, run_gateway

PASSWORD = "a-users-long-password"
MANY = 120  # over two pages of 50
ITEM = "conversation-item"


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [{"name": "a", "base_url": fake.base_url, "models": ["fake-model"]}],
        "assistants": [{"name": "helper", "model": "fake-model", "memory": "off"}],
    }
    with run_gateway(tmp_path_factory.mktemp("sidebar") / "home", config) as running:
        for name in ("alice", "bob", "carol", "dave"):
            add_user(running, name, "user", PASSWORD)
        seed_many(running, "alice")
        yield running


def stamp(at: datetime) -> str:
    """How the store keeps a time in SQLite: naive UTC."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def seed(gateway: Gateway, owner: str, rows: list[tuple[str, str, str, datetime]]) -> None:
    """Conversations (title, model, kind, updated_at) of ``owner``, straight into SQLite."""
    with sqlite3.connect(gateway.home / "enclave.db", timeout=30) as db:
        db.executemany(
            "INSERT INTO conversations (external_id, subject, owner, assistant, kind, title,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(str(uuid.uuid4()), owner, owner, model, kind, title, stamp(at), stamp(at))
             for title, model, kind, at in rows],
        )  # fmt: skip


def seed_many(gateway: Gateway, owner: str) -> None:
    """MANY conversations, one an hour back from now: "chat 0" the newest; every tenth an
    assistant's, every seventh's title holds "needle"."""
    now = datetime.now(UTC)
    rows = []
    for n in range(MANY):
        title = f"chat {n}" + (" needle" if n % 7 == 3 else "")
        model, kind = ("assistant/helper", "assistant") if n % 10 == 0 else ("fake-model", "model")
        rows.append((title, model, kind, now - timedelta(hours=n, minutes=1)))
    seed(gateway, owner, rows)


def token_of(gateway: Gateway, user: str) -> str:
    reply = httpx.post(gateway.url + "/api/auth/login", trust_env=False, timeout=30,
                       json={"username": user, "password": PASSWORD})  # fmt: skip
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def chat(gateway: Gateway, user: str, text: str) -> str:
    """One real exchange through the chat API, kept as a conversation; its id."""
    token = token_of(gateway, user)
    conversation = str(uuid.uuid4())
    reply = httpx.post(
        gateway.v1 + "/chat/completions", trust_env=False, timeout=60,
        headers={"Authorization": f"Bearer {token}", "X-Enclave-Conversation": conversation},
        json={"model": "fake-model", "messages": [{"role": "user", "content": text}]},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    return conversation


def listing(gateway: Gateway, user: str) -> list[dict[str, Any]]:
    token = token_of(gateway, user)
    reply = httpx.get(gateway.url + "/api/conversations", params={"limit": 500}, trust_env=False,
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert reply.status_code == 200, reply.text
    data: list[dict[str, Any]] = reply.json()["data"]
    return data


def titles(page: Any) -> list[str]:
    # textContent: rows far off screen are not laid out (content-visibility), so they
    # have no innerText
    found: list[str] = page.locator(f"[data-testid={ITEM}] .side-title").all_text_contents()
    return found


def wait_count(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=conversation-item]').length === n", arg=count
    )


def open_signed_in(browser: Any, gateway: Gateway, guard: Guard, user: str, **kw: Any) -> Any:
    page = open_console(browser, gateway.url, guard, **kw)
    sign_in(page, gateway.url, user, PASSWORD)
    page.get_by_test_id("conversation-list").wait_for(state="attached")
    return page


def test_the_list_pages_on_the_server_as_it_scrolls(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_console(browser, gateway.url, guard)
    asked: list[str] = []
    page.on("request", lambda r: asked.extend([r.url] if "/api/conversations" in r.url else []))
    sign_in(page, gateway.url, "alice", PASSWORD)
    wait_count(page, 50)
    assert titles(page)[:3] == ["chat 0", "chat 1", "chat 2"]  # newest first
    assert page.get_by_test_id("conversation-more").is_visible()
    for loaded in (100, MANY):
        page.get_by_test_id("conversation-list").locator(
            f"[data-testid={ITEM}]"
        ).last.scroll_into_view_if_needed()
        wait_count(page, loaded)
    assert titles(page) == [f"chat {n}" + (" needle" if n % 7 == 3 else "") for n in range(MANY)]
    assert page.get_by_test_id("conversation-more").count() == 0  # the last page said so
    pages = [u for u in asked if "limit=50" in u]
    assert len(pages) == 3, asked
    assert "cursor=" not in pages[0]
    assert all("cursor=" in u for u in pages[1:])
    headers = page.locator(".side-group h3").all_text_contents()
    assert "Yesterday" in headers
    assert "Previous 7 days" in headers
    first = page.locator(f"[data-testid={ITEM}]").first
    assert "helper" in (first.text_content() or "")  # chat 0 is the assistant's: its badge
    first.locator(".side-open").focus()
    shot(page, "chat-sidebar-en-light")


def test_search_asks_the_server(browser: Any, gateway: Gateway, guard: Guard) -> None:
    page = open_signed_in(browser, gateway, guard, "alice")
    wait_count(page, 50)
    with page.expect_request(lambda r: "q=NEEDLE" in r.url):
        page.get_by_test_id("conversation-search").fill("NEEDLE")
    expected = [f"chat {n} needle" for n in range(MANY) if n % 7 == 3]
    wait_count(page, len(expected))
    assert titles(page) == expected
    page.get_by_test_id("conversation-search").fill("nothing like this")
    page.get_by_test_id("conversation-empty").wait_for()
    page.get_by_test_id("conversation-search").press("Escape")  # clears the search
    wait_count(page, 50)


def test_the_keyboard_moves_opens_and_renames(browser: Any, gateway: Gateway, guard: Guard) -> None:
    page = open_signed_in(browser, gateway, guard, "alice")
    wait_count(page, 50)
    page.get_by_test_id("conversation-search").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent").strip().startswith("chat 2")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    second = page.locator(f"[data-testid={ITEM}]").nth(1)
    second.locator("[aria-current=true]").wait_for()  # the page opened it
    page.keyboard.press("F2")
    box = page.get_by_test_id("conversation-rename-input")
    box.fill("thrown away")
    box.press("Escape")  # nothing changes
    assert titles(page)[1] == "chat 1"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.textContent").strip().startswith("chat 49")
    page.keyboard.press("Home")
    assert page.evaluate("document.activeElement.textContent").strip().startswith("chat 0")


def test_rename_export_and_delete(browser: Any, gateway: Gateway, guard: Guard) -> None:
    kept = chat(gateway, "bob", "What is keyset pagination?")
    old = datetime.now(UTC) - timedelta(days=40)
    seed(gateway, "bob", [("to be deleted", "fake-model", "model", old)])
    page = open_signed_in(browser, gateway, guard, "bob")
    wait_count(page, 2)
    item = page.locator(f"[data-testid={ITEM}][data-id='{kept}']")
    assert item.inner_text().startswith("What is keyset pagination?")

    item.get_by_test_id("conversation-menu").click()
    shot(page, "chat-sidebar-menu-en-light")
    page.get_by_test_id("conversation-rename").click()
    box = page.get_by_test_id("conversation-rename-input")
    box.fill("Pagination notes")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=conversation-item] .side-title')"
        "?.textContent === 'Pagination notes'"
    )
    assert [c["title"] for c in listing(gateway, "bob") if c["id"] == kept] == ["Pagination notes"]

    item.get_by_test_id("conversation-menu").click()
    with page.expect_download() as markdown:
        page.get_by_test_id("conversation-export-md").click()
    assert markdown.value.suggested_filename == "Pagination-notes.md"
    text = Path(markdown.value.path()).read_text()
    assert "Pagination notes" in text
    assert "What is keyset pagination?" in text
    item.get_by_test_id("conversation-menu").click()
    with page.expect_download() as exported:
        page.get_by_test_id("conversation-export-json").click()
    body = json.loads(Path(exported.value.path()).read_text())
    assert body["id"] == kept
    assert body["title"] == "Pagination notes"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]

    doomed = page.locator(f"[data-testid={ITEM}]", has_text="to be deleted")
    page.once("dialog", lambda dialog: dialog.dismiss())
    doomed.click()
    page.keyboard.press("Delete")  # dismissed: it stays
    assert len(listing(gateway, "bob")) == 2
    page.once("dialog", lambda dialog: dialog.accept())
    doomed.get_by_test_id("conversation-menu").click()
    page.get_by_test_id("conversation-delete").click()
    wait_count(page, 1)
    assert [c["id"] for c in listing(gateway, "bob")] == [kept]


def test_a_stored_answer_puts_its_conversation_on_top(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    seed(gateway, "dave", [(f"old {n}", "fake-model", "model", hour_ago - timedelta(minutes=n))
                           for n in range(60)])  # fmt: skip
    page = open_signed_in(browser, gateway, guard, "dave")
    wait_count(page, 50)
    page.locator(f"[data-testid={ITEM}]").last.scroll_into_view_if_needed()  # the next page
    wait_count(page, 60)
    page.get_by_test_id("composer").fill("a brand new question")
    page.get_by_test_id("send").click()
    wait_count(page, 61)  # the chat page's refreshKey: the first page again, the rest kept
    first = page.locator(f"[data-testid={ITEM}]").first
    assert (first.text_content() or "").startswith("a brand new question")
    first.locator("[aria-current=true]").wait_for()  # the open one
    assert titles(page)[-1] == "old 59"


def test_chinese_dark_and_a_phone(browser: Any, gateway: Gateway, guard: Guard) -> None:
    now = datetime.now(UTC)
    seed(gateway, "carol", [
        ("一个很长的标题，说明侧边栏如何处理放不下的文字" * 2, "fake-model", "model", now),
        ("周报草稿", "assistant/helper", "assistant", now - timedelta(days=1)),
        ("数据库索引", "fake-model", "model", now - timedelta(days=3)),
        ("旧的对话", "fake-model", "model", now - timedelta(days=60)),
    ])  # fmt: skip
    page = open_signed_in(browser, gateway, guard, "carol", locale="zh-CN", color_scheme="dark")
    wait_count(page, 4)
    assert page.locator(".side-group h3").all_text_contents()[:3] == ["今天", "昨天", "过去 7 天"]
    assert page.get_by_test_id("new-chat").inner_text().endswith("新对话")
    page.locator(f"[data-testid={ITEM}]").nth(1).get_by_test_id("conversation-menu").click()
    shot(page, "chat-sidebar-zh-dark")
    page.keyboard.press("Escape")
    phone = open_signed_in(browser, gateway, guard, "carol", viewport=PHONE)
    toggle = phone.get_by_test_id("drawer-toggle")  # the chat page's drawer, on a phone
    if toggle.count() and toggle.is_visible():
        toggle.click()
    wait_count(phone, 4)
    phone.locator(f"[data-testid={ITEM}]").first.hover()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(phone, "chat-sidebar-phone-en-light")
