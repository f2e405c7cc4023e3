"""An in-process vector index: cosine top-k over unit-norm float32 rows, keyed by int ids.

One :class:`VectorIndex` holds one namespace (one user's memories, one knowledge base),
so that a search cannot even see another namespace's rows. It is a cache of the
database, never the source of truth: callers rebuild it from their rows at start.

Up to ``exact_limit`` live rows a search is exact (numpy: one matrix-vector product,
~17 ms per 100k rows of 384 dims here). Past that the index adds a compressed copy of
the rows, a 4-bit product quantizer scanned with SIMD (faiss ``PQ{d/4}x4fs``, 48 bytes
a row for 384 dims), and a search is two steps: the quantized scan picks a few thousand
candidates, then the exact float rows rerank them. Measured here on uniformly random
384-d rows, the hardest case: recall@10 against exact ≈ 0.98 at 1M in ~7 ms (p50), and
0.99 at 100k in ~1.5 ms, on one core. Unlike an HNSW graph (recall 0.85 at ef 1024 on
the same data, and minutes to build 1M on two cores) it builds in seconds, and its
recall does not depend on how clustered the data are.

Rows are appended; a removed or replaced id leaves a dead row that searches skip, and
the rows are compacted (and the quantizer retrained) when dead rows pass a quarter.

faiss is imported only when an index first outgrows ``exact_limit``
(``pip install 'enclave[assistants]'``). Methods hold a lock, so a search from one
thread and an add from another are safe.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from enclave.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

EXACT_LIMIT = 20_000  # live rows searched exactly; more → quantized scan + exact rerank
MIN_CANDIDATES = 4_000  # rows reranked exactly per search, at least ...
CANDIDATE_SHARE = 100  # ... and one in this many of the rows (1M rows → 10k candidates)
TRAIN_ROWS = 50_000  # the quantizer learns its codebooks from at most this many rows
DEAD_FRACTION = 0.25  # dead rows over this share → compact


class VectorIndex:
    """Cosine top-k by id; exact up to ``exact_limit`` live rows, two-step above."""

    def __init__(
        self,
        dims: int | None = None,
        *,
        exact_limit: int = EXACT_LIMIT,
        min_candidates: int = MIN_CANDIDATES,
    ) -> None:
        self.dims = dims
        self.exact_limit = exact_limit
        self.min_candidates = min_candidates
        self._lock = threading.RLock()
        self._rows: _Rows | None = _Rows(dims) if dims else None
        self._coarse: Any = None  # the faiss PQ fast-scan index over rows[:coarse.ntotal]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows) if self._rows is not None else 0

    @property
    def kind(self) -> str:
        """``exact`` or ``quantized``: how a search runs now."""
        return "exact" if self._coarse is None else "quantized"

    def add(self, ids: Sequence[int], vectors: Any) -> None:
        """Add rows, or replace the rows of ids already present."""
        rows = self._matrix(vectors)
        if len(ids) != rows.shape[0]:
            raise InvalidRequest(f"{len(ids)} ids for {rows.shape[0]} vectors")
        if not len(ids):
            return
        with self._lock:
            store = self._store(rows.shape[1])
            store.kill(ids)
            store.append(ids, rows)
            if self._coarse is not None:
                self._coarse.add(rows)
            self._maintain()

    def remove(self, ids: Sequence[int]) -> None:
        """Forget these ids; unknown ids are ignored."""
        with self._lock:
            if self._rows is not None:
                self._rows.kill(ids)
                self._maintain()

    def search(self, query: Any, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest ids with their cosine scores, best first."""
        vector = self._matrix(query)
        if vector.shape[0] != 1:
            raise InvalidRequest(f"one query vector expected, got {vector.shape[0]}")
        with self._lock:
            if self._rows is None or k <= 0 or not len(self._rows):
                return []
            self._check_dims(vector.shape[1])
            if self._coarse is None:
                return self._rows.top(vector[0], k, None)
            return self._rows.top(vector[0], k, self._candidates(vector, k))

    def clear(self) -> None:
        with self._lock:
            self._rows = _Rows(self.dims) if self.dims else None
            self._coarse = None

    # --- inside ------------------------------------------------------------------------

    def _matrix(self, vectors: Any) -> Matrix:
        import numpy as np

        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2:
            raise InvalidRequest(f"vectors must be rows, got shape {rows.shape}")
        return rows

    def _check_dims(self, dims: int) -> None:
        if dims != self.dims:
            raise InvalidRequest(f"vectors of {self.dims} dims expected, got {dims}")

    def _store(self, dims: int) -> _Rows:
        if self._rows is None:
            self.dims = dims
            self._rows = _Rows(dims)
        self._check_dims(dims)
        return self._rows

    def _maintain(self) -> None:
        """Compact when dead rows pile up; quantize past ``exact_limit`` live rows."""
        rows = self._rows
        assert rows is not None
        if rows.dead > DEAD_FRACTION * max(rows.total, 1):
            self._rows = rows = rows.compacted()
            self._coarse = None
        quantizable = self.dims is not None and self.dims % 4 == 0
        if self._coarse is None and len(rows) > self.exact_limit and quantizable:
            self._coarse = _quantizer(rows.matrix())
        elif self._coarse is not None and len(rows) <= self.exact_limit // 2:
            self._coarse = None

    def _candidates(self, vector: Matrix, k: int) -> Any:
        import numpy as np

        assert self._rows is not None
        total = self._rows.total
        wanted = min(total, max(self.min_candidates, total // CANDIDATE_SHARE, 40 * k))
        _scores, labels = self._coarse.search(vector, wanted)
        return np.sort(labels[0][labels[0] >= 0])  # in row order: the gather reads ahead


class _Rows:
    """Append-only float rows with their ids; dead rows are marked, then compacted."""

    def __init__(self, dims: int) -> None:
        import numpy as np

        self._data = np.zeros((64, dims), dtype=np.float32)
        self._ids = np.zeros(64, dtype=np.int64)
        self._live = np.zeros(64, dtype=bool)
        self._where: dict[int, int] = {}  # id → row
        self.total = 0  # rows used, dead ones included

    def __len__(self) -> int:
        return len(self._where)

    @property
    def dead(self) -> int:
        return self.total - len(self._where)

    def matrix(self) -> Matrix:
        return self._data[: self.total]

    def append(self, ids: Sequence[int], rows: Matrix) -> None:
        start, count = self.total, len(ids)
        self._grow(start + count)
        self._data[start : start + count] = rows
        self._ids[start : start + count] = ids
        self._live[start : start + count] = True
        for offset, item in enumerate(ids):
            self._where[int(item)] = start + offset
        self.total += count

    def kill(self, ids: Sequence[int]) -> None:
        for item in ids:
            row = self._where.pop(int(item), None)
            if row is not None:
                self._live[row] = False

    def top(self, vector: Matrix, k: int, rows: Any) -> list[tuple[int, float]]:
        """Exact scores over ``rows`` (all rows when None), dead ones skipped."""
        import numpy as np

        if rows is None:
            scores = self._data[: self.total] @ vector
            scores[~self._live[: self.total]] = -np.inf
            rows = np.arange(self.total)
        else:
            rows = rows[self._live[rows]]
            scores = self._data[rows] @ vector
        k = min(k, len(self._where), len(rows))
        if k <= 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(self._ids[rows[i]]), float(scores[i])) for i in best]

    def compacted(self) -> _Rows:
        """The live rows alone, in a new store."""
        keep = self._live[: self.total]
        fresh = _Rows(self._data.shape[1])
        fresh.append(self._ids[: self.total][keep].tolist(), self._data[: self.total][keep])
        return fresh

    def _grow(self, needed: int) -> None:
        import numpy as np

        capacity = self._data.shape[0]
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        data = np.zeros((capacity, self._data.shape[1]), dtype=np.float32)
        data[: self.total] = self._data[: self.total]
        ids = np.zeros(capacity, dtype=np.int64)
        ids[: self.total] = self._ids[: self.total]
        live = np.zeros(capacity, dtype=bool)
        live[: self.total] = self._live[: self.total]
        self._data, self._ids, self._live = data, ids, live


def _quantizer(rows: Matrix) -> Any:
    """A 4-bit PQ fast-scan index over ``rows`` (labels = row numbers)."""
    import numpy as np

    faiss = _faiss()
    dims = rows.shape[1]
    index = faiss.IndexPQFastScan(dims, dims // 4, 4, faiss.METRIC_INNER_PRODUCT)
    step = max(1, rows.shape[0] // TRAIN_ROWS)
    index.train(np.ascontiguousarray(rows[::step]))
    index.add(rows)
    return index


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            "vector indexes over 20k rows need faiss: pip install 'enclave[assistants]'"
        ) from exc
    return faiss
