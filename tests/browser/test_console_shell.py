"""The console's frame: it loads offline under its CSP, signs in with the session cookie,
keeps a normal user out of the admin console, and switches language and theme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, run_gateway


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("console") / "home"
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [{"name": "a", "base_url": fake.base_url, "models": ["fake-model"]}],
    }
    with run_gateway(home, config) as running:
        add_user(running, "root", "admin", "root-password-long")
        add_user(running, "alice", "user", "alice-password-long")
        yield running


def test_pages_carry_a_self_only_policy(gateway: Gateway) -> None:
    for path in ("/", "/admin", "/ui/core/api.js"):
        reply = httpx.get(gateway.url + path, trust_env=False, timeout=10)
        assert reply.status_code == 200, path
        assert reply.headers["content-security-policy"].startswith("default-src 'self';")
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_sign_in_then_reload_keeps_the_session(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_console(browser, gateway.url, guard)
    sign_in(page, gateway.url, "alice", "alice-password-long")
    page.get_by_test_id("composer").wait_for()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["enclave_refresh"]["httpOnly"]  # the session: never readable by scripts
    assert page.evaluate("document.cookie") == ""
    page.reload()
    page.get_by_test_id("composer").wait_for()
    shot(page, "chat-signed-in-en-light")


def test_a_wrong_password_says_so(browser: Any, gateway: Gateway, guard: Guard) -> None:
    page = open_console(browser, gateway.url, guard)
    page.goto(gateway.url + "/")
    page.get_by_test_id("login-user").fill("alice")
    page.get_by_test_id("login-password").fill("not her password")
    page.get_by_test_id("login-submit").click()
    assert "Sign-in failed" in page.get_by_test_id("login-error").inner_text()
    shot(page, "login-failed-en-light")


def test_a_user_is_kept_out_of_the_admin_console(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_console(browser, gateway.url, guard)
    sign_in(page, gateway.url, "alice", "alice-password-long", path="/admin")
    page.get_by_test_id("admin-only").wait_for()
    assert page.get_by_test_id("nav-admin").count() == 0
    page.goto(gateway.url + "/")
    page.get_by_test_id("composer").wait_for()
    assert page.get_by_test_id("nav-admin").count() == 0  # no link to what she cannot use


def test_language_and_theme_switch(browser: Any, gateway: Gateway, guard: Guard) -> None:
    page = open_console(browser, gateway.url, guard, locale="zh-CN", color_scheme="dark")
    page.goto(gateway.url + "/")
    assert page.get_by_test_id("login-submit").inner_text() == "登录"  # follows the browser
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    sign_in(page, gateway.url, "root", "root-password-long")
    assert page.get_by_test_id("nav-chat").inner_text() == "对话"
    shot(page, "chat-zh-dark")
    page.get_by_test_id("lang-switch").select_option("en")
    assert page.get_by_test_id("nav-chat").inner_text() == "Chat"
    page.get_by_test_id("theme-switch").click()  # auto -> light
    assert page.evaluate("document.documentElement.dataset.theme") == "light"


def test_phone_sized(browser: Any, gateway: Gateway, guard: Guard, tmp_path: Path) -> None:
    page = open_console(browser, gateway.url, guard, viewport=PHONE)
    sign_in(page, gateway.url, "root", "root-password-long")
    page.get_by_test_id("composer").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"
    shot(page, "chat-phone-en-light")


def test_two_tabs_starting_together_keep_the_session(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    """Both tabs restore the session from the one cookie at start; if they sent the same
    refresh token at once, the second would look like a replay and end the session."""
    page = open_console(browser, gateway.url, guard)
    sign_in(page, gateway.url, "alice", "alice-password-long")
    other = page.context.new_page()
    for _ in range(3):
        page.evaluate("setTimeout(() => location.reload(), 0)")  # returns before it reloads
        other.goto(gateway.url + "/")
        for tab in (page, other):
            tab.get_by_test_id("composer").wait_for()
            assert tab.get_by_test_id("login-form").count() == 0
