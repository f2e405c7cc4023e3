"""The files of a bench run: JSON, CSV, Markdown, PNG charts and a self-contained HTML.

``bench.json``        config, and per level: summary, time series, system samples, drift
``summary.csv``       one row per level
``requests.csv``      one row per measured request
``timeseries.csv``    one row per level and window
``report.md``         the summary as Markdown (charts linked)
``*.png``             the charts (:mod:`enclave.bench.charts`), when matplotlib is installed
``report.html``       everything above in one file, charts inlined as base64 (no CDN)
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enclave.bench.metrics import Stats, Summary
from enclave.bench.results import BenchResult, LevelResult
from enclave.bench.tables import md_table, text_table

FORMAT = 1
STAT_KEYS = ("mean", "median", "p90", "p95", "p99", "min", "max")
METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
NO_CHARTS = "charts not drawn: matplotlib is not installed (pip install 'enclave[bench]')"


@dataclass
class Files:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- JSON ------------------------------------------------------------------------------


def level_json(level: LevelResult) -> dict[str, Any]:
    return {
        "label": level.label,
        "load": level.load.as_json(),
        "summary": level.summary.as_json(),
        "warmup": level.run.warmup,
        "warmup_errors": level.run.warmup_errors,
        "drift": level.drift.as_json(),
        "timeseries": [w.as_json() for w in level.windows],
        "system": [s.as_json() for s in level.system],
    }


def result_json(result: BenchResult) -> dict[str, Any]:
    return {
        "enclave_bench": FORMAT,
        "created": result.created,
        "config": result.config,
        "levels": [level_json(level) for level in result.levels],
    }


# --- tables ----------------------------------------------------------------------------


def _ms(stats: Stats | None, key: str) -> str:
    return f"{getattr(stats, key):.1f}" if stats is not None else "–"


def errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in errors.items()) or "none"


SUMMARY_COLUMNS: tuple[tuple[str, Callable[[Summary], str]], ...] = (
    ("requests", lambda s: str(s.requests)),
    ("success", lambda s: f"{100 * s.success_rate:.1f} %"),
    ("req/s", lambda s: f"{s.request_throughput:.2f}"),
    ("out tok/s", lambda s: f"{s.output_throughput:.1f}"),
    ("goodput", lambda s: f"{s.goodput:.2f}" if s.goodput is not None else "–"),
    ("TTFT p50", lambda s: _ms(s.ttft_ms, "median")),
    ("TTFT p95", lambda s: _ms(s.ttft_ms, "p95")),
    ("TTFT p99", lambda s: _ms(s.ttft_ms, "p99")),
    ("ITL p50", lambda s: _ms(s.itl_ms, "median")),
    ("ITL p95", lambda s: _ms(s.itl_ms, "p95")),
    ("TPOT p50", lambda s: _ms(s.tpot_ms, "median")),
    ("E2E p50", lambda s: _ms(s.e2e_ms, "median")),
    ("E2E p95", lambda s: _ms(s.e2e_ms, "p95")),
    ("E2E p99", lambda s: _ms(s.e2e_ms, "p99")),
)


def summary_cells(levels: Iterable[LevelResult]) -> tuple[list[str], list[list[str]]]:
    head = ["level", *(name for name, _ in SUMMARY_COLUMNS)]
    rows = [[lv.label, *(cell(lv.summary) for _, cell in SUMMARY_COLUMNS)] for lv in levels]
    return head, rows


def summary_table(result: BenchResult) -> str:
    """The console table (latencies in ms) and errors by type per level."""
    head, rows = summary_cells(result.levels)
    errors = [f"{lv.label}: errors {errors_text(lv.summary.errors)}" for lv in result.levels]
    return text_table(head, rows) + "\n" + "\n".join(errors)


# --- CSV -------------------------------------------------------------------------------


def summary_record(level: LevelResult) -> dict[str, Any]:
    summary = level.summary
    record: dict[str, Any] = {
        "level": level.label,
        "concurrency": level.load.concurrency,
        "rate": level.load.rate,
    }
    for key in (
        "requests", "completed", "failed", "success_rate", "duration_s", "request_throughput",
        "output_throughput", "total_token_throughput", "goodput", "total_input_tokens",
        "total_output_tokens", "usage_missing",
    ):  # fmt: skip
        record[key] = getattr(summary, key)
    for metric in METRICS:
        stats = getattr(summary, metric)
        for key in STAT_KEYS:
            record[f"{metric.removesuffix('_ms')}_{key}_ms"] = (
                getattr(stats, key) if stats is not None else None
            )
    record["errors"] = ";".join(f"{k}={v}" for k, v in summary.errors.items())
    return record


def request_records(level: LevelResult) -> Iterable[dict[str, Any]]:
    for index, s in enumerate(level.samples):
        tpot = s.tpot
        yield {
            "level": level.label,
            "index": index,
            "start_s": round(s.start, 6),
            "ttft_ms": round(s.ttft * 1000, 3) if s.ttft is not None else None,
            "e2e_ms": round(s.e2e * 1000, 3),
            "tpot_ms": round(tpot * 1000, 3) if tpot is not None else None,
            "itl_mean_ms": round(1000 * sum(s.itl) / len(s.itl), 3) if s.itl else None,
            "chunks": s.chunks,
            "prompt_tokens": s.prompt_tokens,
            "output_tokens": s.output_tokens,
            "status": s.status,
            "error": s.error or "",
            "detail": s.detail,
        }


def window_records(level: LevelResult) -> Iterable[dict[str, Any]]:
    for window in level.windows:
        yield {"level": level.label, **window.as_json()}


def write_csv(path: Path, records: Iterable[dict[str, Any]]) -> None:
    rows = list(records)
    with path.open("w", newline="", encoding="utf-8") as out:
        if not rows:
            return
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --- Markdown and HTML -----------------------------------------------------------------


def config_lines(result: BenchResult) -> list[tuple[str, str]]:
    config = result.config
    workload = json.dumps(config["workload"], ensure_ascii=False)
    return [
        ("endpoint", str(config["url"])),
        ("model", str(config["model"])),
        ("created", result.created),
        ("workload", workload),
        ("streamed", str(config["stream"])),
        ("max_tokens", str(config["max_tokens"])),
        ("SLOs (ms)", json.dumps(config["slo_ms"])),
        ("server resources", str(config["system_monitor"])),
    ]


def drift_line(level: LevelResult) -> str | None:
    d = level.drift
    if d.windows < 2 or d.first_p95_ms is None or d.last_p95_ms is None:
        return None
    change = f" ({100 * d.p95_change:+.1f} %)" if d.p95_change is not None else ""
    worst = 100 * (d.worst_success_rate or 0.0)
    return (
        f"{level.label}: E2E p95 {d.first_p95_ms:.1f} ms in the first window, "
        f"{d.last_p95_ms:.1f} ms in the last{change}, worst {d.worst_p95_ms:.1f} ms; "
        f"worst window success {worst:.1f} % over {d.windows} windows"
    )


def markdown(result: BenchResult, charts: list[str], notes: list[str]) -> str:
    head, rows = summary_cells(result.levels)
    parts = ["# enclave bench", ""]
    parts += [f"- **{name}**: {value}" for name, value in config_lines(result)]
    parts += ["", "## Summary (latencies in ms)", "", md_table(head, rows), "", "## Errors", ""]
    parts += [f"- {lv.label}: {errors_text(lv.summary.errors)}" for lv in result.levels]
    drifts = [line for lv in result.levels if (line := drift_line(lv))]
    if drifts:
        parts += ["", "## Over time", "", *(f"- {line}" for line in drifts)]
    parts += ["", "## Charts", ""]
    parts += [f"![{name}]({name})" for name in charts] or ["_none_"]
    parts += [f"\n> {note}" for note in notes]
    return "\n".join(parts) + "\n"


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;display:block;margin:1em 0}.note{color:#a60}"
)


def html_table(head: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def window_table(level: LevelResult) -> str:
    head = ["window (s)", "requests", "errors", "req/s", "TTFT p95", "E2E p50", "E2E p95"]
    head += ["server RSS MB", "server CPU %", "GPU MB"]

    def num(value: float | None, digits: int = 1) -> str:
        return f"{value:.{digits}f}" if value is not None else "–"

    rows = [
        [
            f"{w.start_s:.0f}–{w.end_s:.0f}",
            str(w.requests),
            str(w.errors),
            num(w.request_throughput, 2),
            num(w.ttft_p95_ms),
            num(w.e2e_p50_ms),
            num(w.e2e_p95_ms),
            num(w.server_rss_mb),
            num(w.server_cpu_percent),
            num(w.gpu_memory_mb, 0),
        ]
        for w in level.windows
    ]
    return html_table(head, rows)


def html_report(result: BenchResult, charts: dict[str, bytes], notes: list[str]) -> str:
    esc = html.escape
    head, rows = summary_cells(result.levels)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>enclave bench</title>",
        f"<style>{CSS}</style></head><body><h1>enclave bench</h1>",
        html_table(["", ""], [[k, v] for k, v in config_lines(result)]),
        "<h2>Summary (latencies in ms)</h2>",
        html_table(head, rows),
        "<h2>Errors</h2><ul>",
        *(
            f"<li>{esc(lv.label)}: {esc(errors_text(lv.summary.errors))}</li>"
            for lv in result.levels
        ),
        "</ul><h2>Charts</h2>",
    ]
    for name, png in charts.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<img alt='{esc(name)}' src='data:image/png;base64,{data}'>")
    parts += [f"<p class='note'>{esc(note)}</p>" for note in notes]
    parts.append("<h2>Over time</h2>")
    for level in result.levels:
        line = drift_line(level)
        parts.append(f"<details><summary>{esc(level.label)}</summary>")
        parts += [f"<p>{esc(line)}</p>"] if line else []
        parts += [window_table(level), "</details>"]
    parts.append("</body></html>")
    return "\n".join(parts)


# --- all of it -------------------------------------------------------------------------


def draw_charts(result: BenchResult, files: Files) -> dict[str, bytes]:
    try:
        from enclave.bench.charts import draw
    except ImportError:  # pragma: no cover - the module itself has no heavy imports
        files.notes.append(NO_CHARTS)
        return {}
    try:
        return draw(result)
    except ImportError:
        files.notes.append(NO_CHARTS)
        return {}


def write_all(result: BenchResult, out: Path, *, charts: bool = True) -> Files:
    """Write every report file into ``out`` (made if missing)."""
    from enclave.errors import InvalidRequest

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequest(f"cannot create {out}: {exc.strerror or exc}") from None
    files = Files()
    images = draw_charts(result, files) if charts else {}

    def put(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        files.written.append(path)

    put("bench.json", json.dumps(result_json(result), indent=2, ensure_ascii=False) + "\n")
    for name, records in (
        ("summary.csv", [summary_record(lv) for lv in result.levels]),
        ("requests.csv", [r for lv in result.levels for r in request_records(lv)]),
        ("timeseries.csv", [r for lv in result.levels for r in window_records(lv)]),
    ):
        write_csv(out / name, records)
        files.written.append(out / name)
    for name, png in images.items():
        (out / name).write_bytes(png)
        files.written.append(out / name)
    put("report.md", markdown(result, list(images), files.notes))
    put("report.html", html_report(result, images, files.notes))
    return files
