"""Memory search: the embedded index against pgvector's HNSW, side by side.

Performance targets (assistants issue): search over 100k memories p95 ≤ 10 ms, over 1M
p95 ≤ 30 ms, with recall@10 ≥ 0.95 against exact search, on the embedded default; the
same measured on pgvector.

For each size N (default 100k and 1M), one user owning all N memories (the worst case:
search cost grows with the user's own memories, see ``enclave.memory.repository``):

- data: N unit vectors of 384 dims, ``random`` (uniform on the sphere: the hardest case
  for any approximate index) or ``clustered`` (a mixture of 2,000 topics, closer to real
  embeddings); queries are fresh vectors from the same distribution;
- embedded: :class:`enclave.vectors.index.VectorIndex` built from the rows (build time
  reported), then one query at a time: p50 / p95 latency and recall@10 against exact
  numpy search;
- pgvector: the test suite's bundled PostgreSQL 16 + pgvector (``tests/fakes/postgres.py``),
  migrated as ``enclave serve`` does, rows bulk-loaded into ``memory_vectors`` with the
  HNSW index of migration 0003 built after the load (build time reported), then the
  queries through :class:`enclave.memory.repository.PgVectors` (the gateway's code
  path, over asyncpg): p50 / p95 and recall@10.

Run from the repository root::

    .venv/bin/python bench/memory_search.py                     # 100k and 1M, both sides
    .venv/bin/python bench/memory_search.py --sizes 100000 --data clustered
    .venv/bin/python bench/memory_search.py --sizes 1000000 --no-pgvector

Exit status: 0 the embedded index meets its targets at every size, 1 not.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/memory_search.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import percentile, warn_if_busy  # noqa: E402

DIMS = 384
K = 10
TARGET_P95_MS = {100_000: 10.0, 1_000_000: 30.0}
TARGET_RECALL = 0.95
OWNER = "bench"


def unit(rows: Any) -> Any:
    import numpy as np

    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_data(n: int, queries: int, kind: str, seed: int = 7) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "random":
        return unit(rng.standard_normal((n, DIMS), dtype=np.float32)), unit(
            rng.standard_normal((queries, DIMS), dtype=np.float32)
        )
    topics = rng.standard_normal((2000, DIMS), dtype=np.float32)
    rows = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = min(100_000, n - start)
        noise = rng.standard_normal((part, DIMS), dtype=np.float32)
        rows[start : start + part] = topics[rng.integers(0, 2000, part)] + 0.8 * noise
    asked = topics[rng.integers(0, 2000, queries)]
    return unit(rows), unit(asked + 0.8 * rng.standard_normal(asked.shape, dtype=np.float32))


def exact_top(rows: Any, queries: Any) -> list[set[int]]:
    import numpy as np

    truth = []
    for start in range(0, len(queries), 50):
        scores = queries[start : start + 50] @ rows.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        truth += [set(map(int, row)) for row in top]
    return truth


def summary(
    latencies: list[float], found: list[list[int]], truth: list[set[int]]
) -> dict[str, float]:
    hits = sum(len(set(f) & t) for f, t in zip(found, truth, strict=True))
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "recall": hits / (K * len(truth)),
    }


def embedded(rows: Any, queries: Any, truth: list[set[int]]) -> dict[str, float]:
    from enclave.vectors.index import VectorIndex

    started = time.perf_counter()
    index = VectorIndex(DIMS)
    index.add(list(range(len(rows))), rows)
    build = time.perf_counter() - started
    for query in queries[:20]:  # warm up
        index.search(query, K)
    latencies, found = [], []
    for query in queries:
        t0 = time.perf_counter()
        hits = index.search(query, K)
        latencies.append((time.perf_counter() - t0) * 1000)
        found.append([item for item, _ in hits])
    return {"build_s": build, **summary(latencies, found, truth), "kind": index.kind}  # type: ignore[dict-item]


async def pgvector(
    rows: Any, queries: Any, truth: list[set[int]], url: str, ef_search: int
) -> dict[str, float]:
    from enclave.memory.repository import MemoryRepo, PgVectors
    from enclave.store.repos import open_store

    store = await open_store(url)
    try:
        build = await _load(url.replace("postgresql+asyncpg://", "postgresql://"), rows)
        vectors = PgVectors(MemoryRepo(store), ef_search)
        for query in queries[:20]:  # warm up (and the pool)
            await vectors.search(OWNER, query.reshape(1, -1), K)
        latencies, found = [], []
        for query in queries:
            t0 = time.perf_counter()
            hits = await vectors.search(OWNER, query.reshape(1, -1), K)
            latencies.append((time.perf_counter() - t0) * 1000)
            found.append([item for item, _ in hits])
    finally:
        await store.aclose()
    return {"build_s": build, **summary(latencies, found, truth)}


async def _load(dsn: str, rows: Any) -> float:
    """COPY the rows in (binary), then build the HNSW index; returns the build seconds."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.set_type_codec(
            "vector", schema="public", format="binary",
            encoder=lambda v: struct.pack(">HH", DIMS, 0) + v.astype(">f4").tobytes(),
            decoder=bytes,
        )  # fmt: skip
        await connection.execute("DROP INDEX memory_vectors_hnsw_384")
        await connection.execute(
            "ALTER TABLE memory_vectors DROP CONSTRAINT memory_vectors_memory_id_fkey"
        )
        records = ((i, OWNER, DIMS, rows[i]) for i in range(len(rows)))
        await connection.copy_records_to_table(
            "memory_vectors", records=records, columns=["memory_id", "owner", "dims", "embedding"]
        )
        await connection.execute("SET maintenance_work_mem = '6GB'")
        await connection.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        await connection.execute(
            "CREATE INDEX memory_vectors_hnsw_384 ON memory_vectors "
            "USING hnsw ((embedding::vector(384)) vector_ip_ops) WHERE dims = 384"
        )
        build = time.perf_counter() - started
        await connection.execute("ANALYZE memory_vectors")
        return build
    finally:
        await connection.close()


def start_postgres() -> Any:
    from tests.fakes import postgres as pg

    pg.SETTINGS["shared_buffers"] = "2GB"  # the tests' 32 MB would measure the disk cache
    return pg.shared_server()


def report(size: int, side: str, result: dict[str, Any]) -> bool:
    target = TARGET_P95_MS.get(size)
    ok = result["recall"] >= TARGET_RECALL and (target is None or result["p95"] <= target)
    print(
        f"{size:>9,}  {side:<18} {result['build_s']:>8.1f} s  {result['p50']:>7.2f}  "
        f"{result['p95']:>7.2f}  {result['recall']:>7.3f}   "
        f"{'PASS' if ok else 'FAIL'} (p95 ≤ {target} ms, recall ≥ {TARGET_RECALL})",
        flush=True,
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated N")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--data", choices=("random", "clustered"), default="random")
    parser.add_argument("--no-pgvector", action="store_true", help="only the embedded index")
    parser.add_argument(
        "--ef-search", type=int, default=200, help="pgvector's hnsw.ef_search (memory.pg_ef_search)"
    )
    args = parser.parse_args()
    warn_if_busy()
    server = None if args.no_pgvector else start_postgres()
    print(f"data: {args.data}, {DIMS} dims, k={K}, {args.queries} queries, one user\n")
    print("        N  side                  build    p50 ms   p95 ms  recall@10")
    passed = True
    for size in (int(s) for s in args.sizes.split(",")):
        rows, queries = make_data(size, args.queries, args.data)
        truth = exact_top(rows, queries)
        passed &= report(size, "embedded", embedded(rows, queries, truth))
        if server is not None:
            url = server.create_database()
            result = asyncio.run(pgvector(rows, queries, truth, url, args.ef_search))
            report(size, "pgvector hnsw", result)
            server.drop_database(url.rsplit("/", 1)[1])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
