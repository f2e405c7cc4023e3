"""The in-process vector index against exact search on random unit rows."""

from __future__ import annotations

import numpy as np
import pytest

from enclave.errors import InvalidRequest
from enclave.vectors.index import VectorIndex

DIMS = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIMS), dtype=np.float32)
    normed: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normed


def exact(rows: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(ids[i]) for i in np.argsort(-(rows @ query))[:k]]


def recall(index: VectorIndex, rows: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> float:
    found = 0
    for query in queries:
        truth = set(exact(rows, ids, query, 10))
        found += len(truth & {item for item, _ in index.search(query, 10)})
    return found / (10 * len(queries))


def test_small_index_is_exact_with_cosine_scores_best_first() -> None:
    rng = np.random.default_rng(1)
    rows, ids = unit(rng, 500), np.arange(1000, 1500)
    index = VectorIndex(DIMS)
    index.add(ids.tolist(), rows)
    query = unit(rng, 1)[0]
    hits = index.search(query, 5)
    assert [item for item, _ in hits] == exact(rows, ids, query, 5)
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(rows[ids.tolist().index(hits[0][0])] @ query))
    assert index.kind == "exact"
    assert len(index) == 500
    assert index.search(query.reshape(1, -1), 1000)[-1][0] in set(ids.tolist())
    assert len(index.search(query, 1000)) == 500


def test_remove_and_replace() -> None:
    rng = np.random.default_rng(2)
    rows = unit(rng, 50)
    index = VectorIndex()
    index.add(list(range(50)), rows)
    index.remove([7, 8, 999])
    assert len(index) == 48
    assert all(item not in (7, 8) for item, _ in index.search(rows[7], 50))
    index.add([9], rows[7:8])  # id 9 now holds row 7's vector
    assert index.search(rows[7], 1)[0][0] == 9
    assert index.search(rows[7], 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(index) == 48
    index.remove(list(range(50)))
    assert len(index) == 0
    assert index.search(rows[0], 3) == []


def test_bad_input_is_refused() -> None:
    index = VectorIndex(DIMS)
    with pytest.raises(InvalidRequest):
        index.add([1, 2], np.zeros((1, DIMS), dtype=np.float32))
    with pytest.raises(InvalidRequest):
        index.add([1], np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(InvalidRequest):
        index.search(np.zeros((2, DIMS), dtype=np.float32), 3)
    assert index.search(np.zeros(DIMS, dtype=np.float32), 3) == []


def test_large_index_is_quantized_and_keeps_recall_through_removals() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    n = 30_000
    rows, ids = unit(rng, n), np.arange(n) * 3 + 1
    index = VectorIndex(DIMS, exact_limit=5_000)
    for start in range(0, n, 10_000):  # grows past the limit while rows arrive
        index.add(ids[start : start + 10_000].tolist(), rows[start : start + 10_000])
    assert index.kind == "quantized"
    queries = unit(rng, 40)
    assert recall(index, rows, ids, queries) >= 0.95

    gone = ids[::3]
    index.remove(gone.tolist())  # a third: the rows are compacted and re-quantized
    keep = np.isin(ids, gone, invert=True)
    assert len(index) == int(keep.sum())
    assert recall(index, rows[keep], ids[keep], queries) >= 0.95
    assert not set(gone.tolist()) & {item for q in queries for item, _ in index.search(q, 10)}


def test_rebuild_from_the_same_rows_gives_the_same_answers() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    rows, ids = unit(rng, 8_000), list(range(8_000))
    first, second = VectorIndex(DIMS, exact_limit=2_000), VectorIndex(DIMS, exact_limit=2_000)
    first.add(ids, rows)
    for start in range(0, 8_000, 1_000):
        second.add(ids[start : start + 1_000], rows[start : start + 1_000])
    first.clear()
    assert len(first) == 0
    first.add(ids, rows)
    query = unit(rng, 1)[0]
    found = [{i for i, _ in index.search(query, 10)} for index in (first, second)]
    assert len(found[0] & found[1]) >= 9  # quantizers trained on different rows
