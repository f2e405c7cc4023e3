"""The knowledge-base benchmarks' documents: the StarRiver FAQ (6 files, 6 formats) plus
``bench/data/kb_docs.json`` (16 bilingual product and policy pages), written to a folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faq import write_faq

DATA = Path(__file__).resolve().parent / "data"


def write_corpus(target: Path, copies: int = 1) -> list[Path]:
    """The corpus in ``target``; with ``copies`` > 1, each page again with a copy number
    (different bytes, so none is skipped as unchanged)."""
    write_faq(target)
    pages: dict[str, str] = json.loads((DATA / "kb_docs.json").read_text(encoding="utf-8"))
    for copy in range(copies):
        for name, text in pages.items():
            stem = name if copy == 0 else f"copy{copy}-{name}"
            body = text if copy == 0 else f"{text}\n\nCopy {copy} · 副本 {copy}.\n"
            (target / stem).write_text(body, encoding="utf-8")
    return sorted(target.iterdir())


def questions() -> list[dict[str, str]]:
    lines = (DATA / "kb_questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
