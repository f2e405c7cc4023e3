"""``enclave bench compare A.json B.json``: two runs side by side, level by level.

Levels are matched by their label (concurrency, and rate when set). For each metric the
table shows A, B, the difference and the change in percent, and says which run is better
when they differ by at least :data:`SAME` (lower is better for latencies, higher for
throughput and success).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enclave.bench.tables import md_table, text_table
from enclave.errors import InvalidRequest

SAME = 0.01  # relative differences below 1 % are "same"

Getter = Callable[[dict[str, Any]], float | None]


def _stat(metric: str, key: str) -> Getter:
    def get(summary: dict[str, Any]) -> float | None:
        stats = summary.get(metric)
        value = stats.get(key) if isinstance(stats, dict) else None
        return float(value) if isinstance(value, int | float) else None

    return get


def _field(key: str, scale: float = 1.0) -> Getter:
    def get(summary: dict[str, Any]) -> float | None:
        value = summary.get(key)
        return float(value) * scale if isinstance(value, int | float) else None

    return get


# (name, getter, higher is better)
ROWS: tuple[tuple[str, Getter, bool], ...] = (
    ("success %", _field("success_rate", 100), True),
    ("requests/s", _field("request_throughput"), True),
    ("output tok/s", _field("output_throughput"), True),
    ("goodput req/s", _field("goodput"), True),
    ("TTFT p50 ms", _stat("ttft_ms", "median"), False),
    ("TTFT p95 ms", _stat("ttft_ms", "p95"), False),
    ("TTFT p99 ms", _stat("ttft_ms", "p99"), False),
    ("ITL p50 ms", _stat("itl_ms", "median"), False),
    ("ITL p95 ms", _stat("itl_ms", "p95"), False),
    ("TPOT p50 ms", _stat("tpot_ms", "median"), False),
    ("E2E p50 ms", _stat("e2e_ms", "median"), False),
    ("E2E p95 ms", _stat("e2e_ms", "p95"), False),
    ("E2E p99 ms", _stat("e2e_ms", "p99"), False),
)


def load(path: Path) -> dict[str, Any]:
    """A ``bench.json``; InvalidRequest (one line) if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InvalidRequest(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "enclave_bench" not in data:
        raise InvalidRequest(f"{path} is not an enclave bench result (bench.json)")
    return data


def _levels(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(level.get("label")): level.get("summary") or {}
        for level in data.get("levels", [])
        if isinstance(level, dict)
    }


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def verdict(a: float | None, b: float | None, higher_better: bool) -> str:
    if a is None or b is None:
        return ""
    scale = max(abs(a), abs(b))
    if scale == 0 or abs(b - a) / scale < SAME:
        return "same"
    return "B better" if (b > a) == higher_better else "B worse"


def rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    levels_a, levels_b = _levels(a), _levels(b)
    labels = list(levels_a) + [label for label in levels_b if label not in levels_a]
    out = []
    for label in labels:
        sa, sb = levels_a.get(label, {}), levels_b.get(label, {})
        for name, get, higher_better in ROWS:
            va, vb = get(sa), get(sb)
            delta = vb - va if va is not None and vb is not None else None
            pct = f"{100 * delta / va:+.1f} %" if delta is not None and va else "–"
            diff = "–" if delta is None else f"{delta:+.2f}"
            out.append([label, name, _num(va), _num(vb), diff, pct, verdict(va, vb, higher_better)])
    return out


def render(path_a: Path, path_b: Path, *, markdown: bool = False) -> str:
    a, b = load(path_a), load(path_b)
    head = ["level", "metric", "A", "B", "B − A", "change", ""]
    table = md_table(head, rows(a, b)) if markdown else text_table(head, rows(a, b))
    legend = [
        f"A: {path_a} ({a.get('config', {}).get('url')}, {a.get('created')})",
        f"B: {path_b} ({b.get('config', {}).get('url')}, {b.get('created')})",
    ]
    if markdown:
        legend = [f"- {line}" for line in legend]
    return "\n".join(legend) + "\n\n" + table
