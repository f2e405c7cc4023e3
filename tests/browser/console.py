"""Helpers of the browser tests: Chromium, the origin guard, sign-in, screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]  # fmt: skip
ENGINE_OFF = {"enabled": False, "embeddings": False, "ocr": False}  # the fake answers
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@contextmanager
def launch() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # A plain launch runs on a fresh temporary profile Playwright makes and removes
        # (it refuses --user-data-dir): nothing carries over from an earlier run.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Guard:
    """What pages did wrong: requests off the gateway's origin, script errors."""

    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: set[int] = field(default_factory=lambda: {401})  # answers a test provokes

    def expected(self, text: str) -> bool:
        """Whether a console error is the browser's note of an answer the test provokes
        (the sign-in page's refresh without a session is a 401)."""
        found = re.search(r"Failed to load resource: .*status of (\d+)", text)
        return found is not None and int(found.group(1)) in self.statuses

    def console(self, message: Any) -> None:
        if message.type == "error" and not self.expected(message.text):
            self.errors.append(message.text)

    def check(self) -> None:
        assert not self.foreign, f"the page asked for something off its origin: {self.foreign}"
        assert not self.errors, f"the page's scripts failed: {self.errors}"


def open_console(
    browser: Any,
    origin: str,
    guard: Guard,
    *,
    locale: str = "en-US",
    color_scheme: str = "light",
    viewport: dict[str, int] | None = None,
    timezone_id: str | None = None,
) -> Any:
    """A new context and page, guarded: anything but ``origin`` is aborted and recorded.
    ``timezone_id`` (e.g. "Asia/Shanghai"): the browser's zone; default, the machine's."""
    context = browser.new_context(
        locale=locale, color_scheme=color_scheme, viewport=viewport or DESKTOP,
        service_workers="block", timezone_id=timezone_id,
    )  # fmt: skip
    context.set_default_timeout(20_000)
    mine = urlsplit(origin)

    def route(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or (parts.scheme, parts.netloc) == (
            mine.scheme, mine.netloc,
        ):  # fmt: skip
            route.continue_()
        else:
            guard.foreign.append(url)
            route.abort()

    context.route(re.compile(".*"), route)
    page = context.new_page()
    page.on("pageerror", lambda error: guard.errors.append(str(error)))
    page.on("console", guard.console)
    return page


def sign_in(page: Any, origin: str, user: str, password: str, path: str = "/") -> None:
    page.goto(origin + path)
    page.get_by_test_id("login-user").fill(user)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("login-form").wait_for(state="detached")


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot under test-output/screenshots/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
