"""The chat app's Tasks and Schedules pages in Chromium, on a real gateway with
authentication on, its in-process worker and scheduler, and the fake upstream: a run
started from a template's form is followed live over the WebSocket (its progress bar
moves, a dropped socket resumes without losing a line), run again and cancelled; a run
whose model step answers in Markdown shows it rendered and its output file opens and
downloads; a schedule is added (cron, in the browser's time zone), paused, resumed and
removed; an administrator sees everyone's runs with their owners."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, run_gateway

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

pytestmark = pytest.mark.fake_upstream(models=["fake-model"], tokens=64)

PASSWORDS = {"root": "root-password-long", "alice": "alice-password-long"}
ZONE = "Asia/Shanghai"  # the browser's time zone: the schedule form's default
WAIT_MS = 60_000  # a run of a few seconds on a loaded machine
REPORT = "# Tea report\n\n- **Green** tea in the morning\n\n```python\nprint('oolong')\n```\n"

COUNT_DOWN = {
    "name": "count-down",
    "description": "Counts down in three steps, reporting progress as it goes",
    "params": {"label": {"type": "string", "default": "demo", "description": "a name for the run"}},
    "steps": [
        {"id": f"wait{n}", "kind": "sleep", "title": f"Count down {n}", "seconds": 2,
         "progress": True}
        for n in (1, 2, 3)
    ],
}  # fmt: skip
NOTHING = {"name": "nothing", "steps": [{"id": "done", "kind": "noop"}]}
TEA_REPORT = {
    "name": "tea-report",
    "description": "Asks the model for a report and saves it as Markdown",
    "params": {"topic": {"type": "string", "description": "what the report is about"}},
    "steps": [
        {"id": "write", "kind": "llm", "title": "Write the report", "model": "fake-model",
         "prompt": "Write a short report about {{ params.topic }}"},
        {"id": "save", "kind": "write_file", "title": "Save it", "path": "report.md",
         "content": "{{ steps.write.text }}"},
    ],
    "result": "write",
}  # fmt: skip
# Every WebSocket the page opens, so that the test can drop one as a network would.
SOCKETS = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""
PERCENT = """(above) => {
  const bar = document.querySelector('[data-testid=run-view] [data-testid=run-progress]');
  const value = parseFloat(bar ? bar.dataset.percent : '');
  return value > above && value < 100 ? value : null;
}"""


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("tasks-console") / "home"
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [{"name": "a", "base_url": fake.base_url, "models": ["fake-model"]}],
    }
    with run_gateway(home, config) as running:
        add_user(running, "root", "admin", PASSWORDS["root"])
        add_user(running, "alice", "user", PASSWORDS["alice"])
        define(running, COUNT_DOWN)
        yield running


def bearer(gateway: Gateway, user: str) -> dict[str, str]:
    """A session of USER (15 minutes: longer than the module runs)."""
    return session(gateway.url, user)


@functools.cache
def session(url: str, user: str) -> dict[str, str]:
    body = {"username": user, "password": PASSWORDS[user]}
    reply = httpx.post(url + "/api/auth/login", json=body, trust_env=False, timeout=30)
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def call(gateway: Gateway, method: str, path: str, user: str = "alice", **kw: Any) -> Any:
    reply = httpx.request(method, gateway.url + path, headers=bearer(gateway, user),
                          trust_env=False, timeout=30, **kw)  # fmt: skip
    assert reply.status_code < 300, reply.text
    return reply.json()


def define(gateway: Gateway, definition: dict[str, Any]) -> None:
    call(gateway, "POST", "/api/tasks", "root", json=definition)


def open_page(browser: Any, gateway: Gateway, guard: Guard, user: str, path: str, **kw: Any) -> Any:
    page = open_console(browser, gateway.url, guard, **kw)
    page.add_init_script(SOCKETS)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, gateway.url, user, PASSWORDS[user], path=path)
    return page


def whole_shot(page: Any, name: str) -> None:
    """The whole page: the shell scrolls inside <main>, so the viewport is made as tall as
    its content for the picture, then put back."""
    size = page.viewport_size
    tall = page.evaluate("document.querySelector('main').scrollHeight + 60")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], tall)})
    shot(page, name)
    page.set_viewport_size(size)


def no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def start(page: Any, task: str, picture: str = "", **params: str) -> str:
    """Start TASK from its card's form (a screenshot of it named PICTURE); the id of the
    run the page then shows."""
    card = page.locator(f"[data-testid=task-item][data-name='{task}']")
    card.get_by_test_id("task-start").click()
    for name, value in params.items():
        page.get_by_test_id(f"param-{name}").fill(value)
    if picture:
        shot(page, picture)
    page.get_by_test_id("task-start-submit").click()
    view = page.get_by_test_id("run-view")
    view.wait_for()
    return str(view.get_attribute("data-id"))


def reaches(page: Any, status: str) -> None:
    view = page.get_by_test_id("run-view")
    expect(view).to_have_attribute("data-status", status, timeout=WAIT_MS)


def finished(page: Any, status: str) -> None:
    reaches(page, status)
    expect(page.get_by_test_id("run-live")).to_have_attribute("data-state", "done")


def run_row(page: Any, run: str) -> Any:
    return page.locator(f"[data-testid=run-item][data-id={run}]")


def logged(gateway: Gateway, run: str) -> list[str]:
    """The ids of the run's events the page lists in its log (status, log and error)."""
    events = call(gateway, "GET", f"/api/runs/{run}/events")["data"]
    return [str(e["id"]) for e in events if e["type"] in ("status", "log", "error")]


def test_a_run_is_followed_live_resumed_retried_and_cancelled(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_page(browser, gateway, guard, "alice", "/#/tasks")
    page.locator("[data-testid=task-item][data-name=count-down]").wait_for()
    run = start(page, "count-down", "tasks-start-en-light", label="first")
    first = page.wait_for_function(PERCENT, arg=0, timeout=WAIT_MS).json_value()
    assert call(gateway, "GET", f"/api/runs/{run}")["params"] == {"label": "first"}

    # the network drops the socket mid-run: a new ticket, a new socket, resumed after the
    # last event seen
    page.evaluate("window.__sockets.forEach((socket) => socket.close())")
    page.wait_for_function("() => __sockets.length > 1 && __sockets.at(-1).readyState === 1")
    page.wait_for_function(PERCENT, arg=first, timeout=WAIT_MS)  # the bar moves on
    finished(page, "succeeded")
    expect(page.get_by_test_id("run-progress")).to_have_attribute("data-percent", "100")
    steps = page.get_by_test_id("run-step")
    expect(steps).to_have_count(3)
    assert set(steps.evaluate_all("(items) => items.map((i) => i.dataset.status)")) == {"done"}
    lines = page.get_by_test_id("run-log-line").evaluate_all("(l) => l.map((x) => x.dataset.event)")
    assert lines == logged(gateway, run)  # every line once, none lost
    whole_shot(page, "tasks-run-en-light")

    page.get_by_test_id("run-retry").click()
    expect(page.get_by_test_id("run-view")).not_to_have_attribute("data-id", run)
    again = str(page.get_by_test_id("run-view").get_attribute("data-id"))
    assert call(gateway, "GET", f"/api/runs/{again}")["retry_of"] == run
    reaches(page, "running")
    page.get_by_test_id("run-cancel").click()
    finished(page, "cancelled")
    assert call(gateway, "GET", f"/api/runs/{again}")["status"] == "cancelled"
    assert page.get_by_test_id("run-cancel").count() == 0

    page.get_by_test_id("run-back").click()
    expect(run_row(page, run)).to_have_attribute("data-status", "succeeded")
    expect(run_row(page, again)).to_have_attribute("data-status", "cancelled")
    whole_shot(page, "tasks-en-light")
    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    whole_shot(page, "tasks-phone-en-light")


def test_an_admin_sees_every_run_with_its_owner(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    define(gateway, NOTHING)
    for _ in range(21):  # a page is 20: the 21st is on the next
        call(gateway, "POST", "/api/runs", json={"task": "nothing"})
    call(gateway, "POST", "/api/runs", json={"task": "count-down", "params": {"label": "hers"}})
    page = open_page(browser, gateway, guard, "root", "/admin#/config", locale="zh-CN",
                     color_scheme="dark")  # fmt: skip
    page.get_by_test_id("nav-tasks").click()  # the admin console's entry: the chat app's page
    page.get_by_test_id("tasks-page").wait_for()
    assert page.url.endswith("/#/tasks")
    rows = page.get_by_test_id("run-item")
    expect(rows.first).to_be_visible()
    assert "alice" in rows.first.inner_text()
    expect(page.get_by_test_id("nav-tasks")).to_have_text("任务")
    whole_shot(page, "tasks-zh-dark")
    page.get_by_test_id("runs-task").select_option("nothing")
    expect(rows).to_have_count(20)
    page.get_by_test_id("runs-more").click()
    expect(rows).to_have_count(21)
    assert page.get_by_test_id("runs-more").count() == 0
    page.get_by_test_id("runs-task").select_option("count-down")
    expect(rows.first).to_contain_text("alice")
    rows.first.click()
    page.get_by_test_id("run-view").wait_for()
    expect(page.get_by_test_id("run-facts")).to_contain_text("alice")
    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    whole_shot(page, "tasks-run-phone-zh-dark")


def test_a_result_in_markdown_and_its_file(
    browser: Any, gateway: Gateway, guard: Guard, fake: FakeUpstream
) -> None:
    pytest.importorskip("enclave.tasks.steps.llm", reason="the llm step (part C)")
    pytest.importorskip("enclave.tasks.steps.files", reason="the write_file step (part C)")
    define(gateway, TEA_REPORT)
    fake.configure(reply=REPORT)
    page = open_page(browser, gateway, guard, "alice", "/#/tasks")
    page.locator("[data-testid=task-item][data-name=tea-report]").get_by_test_id(
        "task-start"
    ).click()
    page.get_by_test_id("param-topic").fill("")
    page.get_by_test_id("task-start-submit").click()
    expect(page.get_by_test_id("param-error")).to_have_text("Required")  # checked in the page
    page.get_by_test_id("param-topic").fill("green tea")
    page.get_by_test_id("task-start-submit").click()
    finished(page, "succeeded")

    result = page.get_by_test_id("run-result-text")
    expect(result.locator("h1")).to_have_text("Tea report")
    expect(result.locator("strong")).to_have_text("Green")
    expect(result.get_by_test_id("copy-code")).to_have_count(1)
    file = page.locator("[data-testid=run-file][data-path='report.md']")
    file.get_by_test_id("run-file-open").click()
    expect(page.get_by_test_id("file-view-md").locator("h1")).to_have_text("Tea report")
    # its close button, not Escape: Chromium may hold an Escape back from a dialog
    # opened soon after another one closed (close watchers without a new user activation)
    page.locator("dialog[open]").get_by_role("button", name="Close").click()
    expect(page.locator("dialog[open]")).to_have_count(0)
    with page.expect_download() as saved:
        file.get_by_test_id("run-file-download").click()
    assert saved.value.suggested_filename == "report.md"
    assert Path(saved.value.path()).read_text(encoding="utf-8").startswith("# Tea report")
    whole_shot(page, "tasks-result-en-light")
    fake.restore()


def test_a_schedule_is_added_paused_resumed_and_removed(
    browser: Any, gateway: Gateway, guard: Guard
) -> None:
    page = open_page(browser, gateway, guard, "alice", "/#/schedules", timezone_id=ZONE)
    page.get_by_test_id("schedules-empty").wait_for()
    page.get_by_test_id("schedule-add").click()
    page.get_by_test_id("schedule-task").select_option("count-down")
    page.get_by_test_id("schedule-name").fill("weekday-mornings")
    expect(page.get_by_test_id("schedule-timezone")).to_have_value(ZONE)
    page.get_by_test_id("schedule-cron").fill("0 7 * * 1-5")
    page.get_by_test_id("param-label").fill("morning")
    whole_shot(page, "schedules-form-en-light")
    page.get_by_test_id("schedule-submit").click()
    item = page.get_by_test_id("schedule-item")
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("schedule-trigger")).to_have_text(f"cron 0 7 * * 1-5 ({ZONE})")
    [made] = call(gateway, "GET", "/api/schedules")["data"]
    assert made["trigger"] == {"kind": "cron", "cron": "0 7 * * 1-5", "timezone": ZONE}
    assert made["params"] == {"label": "morning"}

    page.get_by_test_id("schedule-add").click()
    page.get_by_test_id("schedule-kind-interval").click()
    page.get_by_test_id("schedule-minutes").fill("90")
    page.get_by_test_id("schedule-submit").click()
    expect(item).to_have_count(2)
    every = page.get_by_test_id("schedule-trigger").filter(has_text="every")
    expect(every).to_have_text("every 90 min")
    page.get_by_test_id("schedule-add").click()
    page.get_by_test_id("schedule-kind-once").click()
    page.get_by_test_id("schedule-at").fill("2030-01-02T07:30")  # in the browser's zone
    page.get_by_test_id("schedule-submit").click()
    expect(item).to_have_count(3)

    mornings = page.locator(f"[data-testid=schedule-item][data-id={made['id']}]")
    mornings.get_by_test_id("schedule-pause").click()
    expect(mornings).to_have_attribute("data-paused", "true")
    assert call(gateway, "GET", f"/api/schedules/{made['id']}")["paused"] is True
    whole_shot(page, "schedules-en-light")
    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    whole_shot(page, "schedules-phone-en-light")
    mornings.get_by_test_id("schedule-resume").click()
    expect(mornings).to_have_attribute("data-paused", "false")
    mornings.get_by_test_id("schedule-remove").click()
    expect(item).to_have_count(2)
    left = {
        s["trigger"]["kind"]: s["trigger"] for s in call(gateway, "GET", "/api/schedules")["data"]
    }
    assert left["interval"] == {"kind": "interval", "every_s": 5400}
    at = datetime.fromisoformat(left["once"]["at"].replace("Z", "+00:00"))
    assert at == datetime(2030, 1, 1, 23, 30, tzinfo=UTC)  # 07:30 in Shanghai
