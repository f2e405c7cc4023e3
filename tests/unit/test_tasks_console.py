"""The Tasks and Schedules pages' own checks that need no browser: every string has both
languages, and the run statuses the pages know are the service's."""

from __future__ import annotations

import json
import re

from enclave.tasks.info import TERMINAL
from enclave.web import STATIC

CHAT = STATIC / "chat"
PAGES = sorted([*CHAT.glob("tasks*.js"), *CHAT.glob("schedules*.js")])


def test_every_string_is_in_english_and_chinese() -> None:
    source = (CHAT / "tasks_strings.js").read_text()
    english, chinese = source.split("\n  zh: {")
    keys = [set(re.findall(r'^\s+"([\w.]+)":', part, re.M)) for part in (english, chinese)]
    assert keys[0] == keys[1], keys[0] ^ keys[1]
    used: set[str] = set()
    for page in PAGES:
        text = page.read_text()
        used |= set(re.findall(r'\bt\("((?:tasks|schedules)\.[\w.]+)"', text))
        # t(`schedules.${verb}.done`), t(`tasks.form.${spec.type}`): the fixed parts
        used |= {m.split("${")[0] for m in re.findall(r"\bt\(`((?:tasks|schedules)\.[^`]+)`", text)}
    prefixes = {key for key in used if key.endswith(".")}
    assert used - prefixes <= keys[0], used - prefixes - keys[0]
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in keys[0]), prefix


def test_the_pages_know_every_run_status() -> None:
    source = (CHAT / "tasks_common.js").read_text()
    listed = re.search(r"export const STATUSES = (\[.*?\]);", source, re.S)
    assert listed is not None
    assert set(json.loads(listed.group(1))) == {"queued", "running", *TERMINAL}
    live = re.search(
        r"export const TERMINAL = new Set\((\[.*?\])\);", (CHAT / "tasks_live.js").read_text()
    )
    assert live is not None
    assert set(json.loads(live.group(1))) == set(TERMINAL)
