"""Signing in to the console with the company directory: a real slapd (tests/ldapserver.py)
behind a real gateway, the sign-in form in Chromium. A directory administrator reaches the
admin console; a directory user chats and is kept out of it; one in no mapped group is
told why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.console import Guard, open_console, shot, sign_in
from tests.fakes.procs import run_fake_upstream
from tests.gateway import Gateway, run_gateway
from tests.ldapserver import (
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    LdapServer,
    available,
)

pytestmark = pytest.mark.skipif(not available(), reason="Debian's slapd is not installed")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = LdapServer.start()
    try:
        with run_fake_upstream() as fake:
            ldap = {
                "urls": [directory.url], "bind_dn": SERVICE_DN,
                "bind_password": SERVICE_PASSWORD, "user_base": PEOPLE, "group_base": GROUPS,
                "role_map": {"admins": "admin", "staff": "user"},
            }  # fmt: skip
            config = {
                "auth": {"mode": "on", "ldap": ldap},
                "engine": {"enabled": False, "embeddings": False, "ocr": False},
                "upstreams": [{"name": "a", "base_url": fake.base_url, "models": ["fake-model"]}],
            }
            with run_gateway(tmp_path_factory.mktemp("ldap-console") / "home", config) as gw:
                yield gw
    finally:
        directory.stop()


def test_a_directory_admin_signs_in_to_the_admin_console(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_console(browser, gateway.url, guard)
    sign_in(page, gateway.url, "alice", USERS["alice"], path="/admin")
    page.get_by_test_id("nav-users").click()
    row = page.locator("tr", has_text="alice")
    row.first.wait_for()
    assert row.first.get_by_test_id("user-source").inner_text() == "directory"  # provisioned
    assert "Reset password" not in row.first.inner_text()  # its password lives in the directory
    shot(page, "ldap-admin-users-en-light")


def test_a_directory_user_chats_but_is_kept_out_of_admin(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_console(browser, gateway.url, guard)
    sign_in(page, gateway.url, "bob", USERS["bob"])
    page.get_by_test_id("composer").wait_for()
    assert page.get_by_test_id("nav-admin").count() == 0
    page.goto(gateway.url + "/admin")
    page.get_by_test_id("admin-only").wait_for()


def test_someone_in_no_mapped_group_is_told_why(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    guard.statuses.add(403)  # the refusal, on purpose
    page = open_console(browser, gateway.url, guard)
    page.goto(gateway.url + "/")
    page.get_by_test_id("login-user").fill("carol")
    page.get_by_test_id("login-password").fill(USERS["carol"])
    page.get_by_test_id("login-submit").click()
    assert "auth.ldap.role_map" in page.get_by_test_id("login-error").inner_text()
