"""The Knowledge and Memory pages' own checks that need no browser: the file types the
upload page sends are the ones the server reads, and every string has both languages."""

from __future__ import annotations

import json
import re

from enclave.knowledge.documents import KINDS
from enclave.web import STATIC

CHAT = STATIC / "chat"


def test_the_upload_page_sends_the_types_the_server_reads() -> None:
    source = (CHAT / "kb_upload.js").read_text()
    listed = re.search(r"export const SUFFIXES = \[(.*?)\];", source, re.S)
    assert listed is not None
    assert json.loads(f"[{listed.group(1).strip().rstrip(',')}]") == list(KINDS)


def test_every_string_is_in_english_and_chinese() -> None:
    source = (CHAT / "workspace_strings.js").read_text()
    english, chinese = source.split("\n  zh: {")
    keys = [set(re.findall(r'^\s+"([\w.]+)":', part, re.M)) for part in (english, chinese)]
    assert keys[0] == keys[1]
    used = set()
    for name in ("kb.js", "kb_files.js", "kb_search.js", "kb_upload.js", "memory.js"):
        used |= set(re.findall(r'\bt\("((?:kb|memory)\.[\w.]+)"', (CHAT / name).read_text()))
    prefixes = {key for key in used if key.endswith(".")}  # t("memory.tab." + id)
    assert used - prefixes <= keys[0], used - prefixes - keys[0]
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in keys[0]), prefix
