"""The PNG charts of a bench report (matplotlib, the ``bench`` extra; imported lazily).

- ``latency.png``: TTFT and end-to-end latency (p50, p95, p99) against concurrency;
- ``throughput.png``: requests/s, output tokens/s (and goodput) against concurrency;
- ``ttft_distribution.png``: a TTFT histogram per level;
- ``timeseries.png`` (when a level has several windows): p95 latency and success rate
  per window, to show drift over a long run.

Figures are made with ``matplotlib.figure.Figure`` (no pyplot, no global state) and
rendered by the Agg backend: no display is needed.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from enclave.bench.results import BenchResult, LevelResult

DPI = 100
MAX_HISTOGRAMS = 8
MIN_WINDOWS = 3


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, bbox_inches="tight")
    return out.getvalue()


def _new(width: float = 7.0, height: float = 4.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _xs(levels: list[LevelResult]) -> list[int]:
    return [level.load.concurrency for level in levels]


def _line(
    axes: Axes,
    xs: list[int],
    ys: list[float | None],
    label: str,
    style: str,
    *,
    color: str | None = None,
) -> None:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if points:
        xy = ([p[0] for p in points], [p[1] for p in points])
        axes.plot(*xy, style, label=label, color=color)


def _legend(axes: Axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend()


def latency(levels: list[LevelResult]) -> bytes:
    figure = _new(10, 4)
    xs = _xs(levels)
    for axes, key, title in zip(
        figure.subplots(1, 2), ("ttft_ms", "e2e_ms"), ("Time to first token", "End-to-end latency"),
        strict=True,
    ):  # fmt: skip
        for attr, style in (("median", "o-"), ("p95", "s--"), ("p99", "^:")):
            values = []
            for level in levels:
                stats = getattr(level.summary, key)
                values.append(getattr(stats, attr) if stats is not None else None)
            _line(axes, xs, values, "p50" if attr == "median" else attr, style)
        axes.set_title(title)
        axes.set_xlabel("concurrency")
        axes.set_ylabel("ms")
        axes.grid(alpha=0.3)
        _legend(axes)
    return _png(figure)


def throughput(levels: list[LevelResult]) -> bytes:
    figure = _new()
    axes = figure.subplots()
    xs = _xs(levels)
    _line(axes, xs, [lv.summary.request_throughput for lv in levels], "requests/s", "o-")
    goodput = [lv.summary.goodput for lv in levels]
    if any(g is not None for g in goodput):
        _line(axes, xs, goodput, "goodput (req/s)", "s--")
    axes.set_xlabel("concurrency")
    axes.set_ylabel("requests/s")
    axes.grid(alpha=0.3)
    tokens = axes.twinx()
    _line(
        tokens,
        xs,
        [lv.summary.output_throughput for lv in levels],
        "output tok/s",
        "^-.",
        color="C2",
    )
    tokens.set_ylabel("output tokens/s")
    handles = axes.get_legend_handles_labels()
    more = tokens.get_legend_handles_labels()
    if handles[0] or more[0]:
        axes.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left")
    axes.set_title("Throughput")
    return _png(figure)


def ttft_distribution(levels: list[LevelResult]) -> bytes:
    figure = _new()
    axes = figure.subplots()
    for level in levels[:MAX_HISTOGRAMS]:
        values = [s.ttft * 1000 for s in level.samples if s.ok and s.ttft is not None]
        if values:
            axes.hist(values, bins=40, histtype="step", linewidth=1.5, label=level.label)
    axes.set_xlabel("TTFT (ms)")
    axes.set_ylabel("requests")
    axes.set_title("TTFT distribution")
    axes.grid(alpha=0.3)
    _legend(axes)
    return _png(figure)


def over_time(levels: list[LevelResult]) -> bytes:
    figure = _new(10, 4)
    latency_axes, success_axes = figure.subplots(1, 2)
    for level in levels:
        busy = [w for w in level.windows if w.requests]
        mids = [(w.start_s + w.end_s) / 2 for w in busy]
        latency_axes.plot(mids, [w.e2e_p95_ms for w in busy], ".-", label=level.label)
        rates = [100 * (w.success_rate or 0.0) for w in busy]
        success_axes.plot(mids, rates, ".-", label=level.label)
    latency_axes.set_title("End-to-end p95 per window")
    latency_axes.set_ylabel("ms")
    success_axes.set_title("Success rate per window")
    success_axes.set_ylabel("%")
    for axes in (latency_axes, success_axes):
        axes.set_xlabel("seconds")
        axes.grid(alpha=0.3)
        _legend(axes)
    return _png(figure)


def draw(result: BenchResult) -> dict[str, bytes]:
    """Every chart as PNG bytes by file name; ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    levels = result.levels
    charts = {
        "latency.png": latency(levels),
        "throughput.png": throughput(levels),
        "ttft_distribution.png": ttft_distribution(levels),
    }
    if any(sum(1 for w in lv.windows if w.requests) >= MIN_WINDOWS for lv in levels):
        charts["timeseries.png"] = over_time(levels)
    return charts
