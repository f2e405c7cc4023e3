"""Targets, verdicts and the printed table of ``bench/auth_overhead.py``."""

from __future__ import annotations

from typing import Any

TARGET_ADDED_P50_MS = 0.5  # issue 17 (the identity issue had 2.0)
BASELINE, SQLITE, POSTGRES = "baseline", "sqlite", "postgres"
AT_BASE = "@base"
SQLITE_BASE = SQLITE + AT_BASE  # --baseline-src: audited SQLite from another checkout
POSTGRES_BASE = POSTGRES + AT_BASE  # the same on PostgreSQL (its own database)
AUDITED = (SQLITE, POSTGRES)
MODES = ("plain", "stream")
MODE_NAMES = {"plain": "non-streamed", "stream": "streamed"}
WIDTH = 14


def added(results: dict[str, Any], name: str, mode: str, q: str) -> float | None:
    configs = results["configs"]
    if name not in configs:
        return None
    base = configs[BASELINE][mode]["latency"]["latency_ms"]
    ours = configs[name][mode]["latency"]["latency_ms"]
    if q not in base or q not in ours:
        return None
    return float(ours[q] - base[q])


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    """PASS (True) / FAIL (False) / not measured (None).

    ``added_p50_*``: p50 at the fixed rate minus the baseline's, all answers correct in
    both. ``audit_*``: the chain verifies and holds a record per call answered.
    ``answers``: no wrong answer anywhere (every phase, every configuration).
    """
    configs = results["configs"]
    out: dict[str, bool | None] = {}
    for name in AUDITED:
        for mode in MODES:
            extra = added(results, name, mode, "p50")
            if extra is None:
                out[f"added_p50_{name}_{mode}"] = None
                continue
            clean = all(
                configs[n][mode]["latency"]["errors"] == 0 for n in (BASELINE, name)
            )  # fmt: skip
            out[f"added_p50_{name}_{mode}"] = clean and extra <= TARGET_ADDED_P50_MS
        out[f"audit_{name}"] = configs[name]["audit"]["pass"] if name in configs else None
    out["answers"] = all(
        config[mode][phase]["errors"] == 0
        for config in configs.values()
        for mode in MODES
        for phase in ("latency", "throughput")
    )
    return out


# --- the report ----------------------------------------------------------------------------


def word(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def row(label: str, values: list[str]) -> None:
    print(f"{label:34}" + "".join(f"{v:>{WIDTH}}" for v in values))


def report(
    results: dict[str, Any], config: dict[str, Any], verdict: dict[str, bool | None]
) -> None:
    c = results["configs"]
    names = [n for n in (BASELINE, SQLITE_BASE, SQLITE, POSTGRES_BASE, POSTGRES) if n in c]
    machine = results["machine"]
    print()
    print(
        f"auth + strict audit overhead — {config['machine']}, Python {config['python']}, "
        f"gateway on CPU {config['proxy_cpu']}, fake + load on CPU {config['load_cpu']}"
        + (
            f", postgres on CPU {config['postgres_cpu']}"
            if config["postgres_cpu"] is not None
            else ""
        )
    )
    gaps = ", ".join(
        f"CPU {cpu}: longest {g['max_ms']:.1f} ms, {g['over_1ms']} over 1 ms"
        for cpu, g in machine.get("gaps", {}).items()
    )
    print(f"machine: scheduling gaps in {machine['seconds']:g} s ({gaps or 'not measured'}); "
          f"steal over the run {machine.get('steal', 0):.1%}")  # fmt: skip
    print(f"postgres: {config['postgres']}")
    print()
    row("", names)
    row("gateway CPU when idle", [cell(c[n]["idle_cpu"], "{:.1%}") for n in names])
    for mode in MODES:
        what = "non-streamed" if mode == "plain" else "streamed (timed to [DONE])"
        print(f"-- {what}: open loop, {config['rate']:g} req/s for {config['latency_seconds']:g} s")
        lat = {n: c[n][mode]["latency"] for n in names}
        row("latency p50 ms", [cell(lat[n]["latency_ms"].get("p50")) for n in names])
        row("latency p99 ms", [cell(lat[n]["latency_ms"].get("p99")) for n in names])
        if mode == "stream":
            row("TTFT p50 ms", [cell(lat[n].get("ttft_ms", {}).get("p50")) for n in names])
        row(
            f"added p50 ms (target ≤ {TARGET_ADDED_P50_MS:g})",
            ["-"] + [cell(added(results, n, mode, "p50"), "{:+.2f}") for n in names[1:]],
        )
        row("added p99 ms", ["-"] + [cell(added(results, n, mode, "p99"), "{:+.2f}")
                                     for n in names[1:]])  # fmt: skip
        row("gateway CPU µs / request",
            [cell(lat[n].get("proxy_cpu_us_per_request"), "{:.0f}") for n in names])  # fmt: skip
        row("requests / errors", [f"{lat[n]['requests']} / {lat[n]['errors']}" for n in names])
    print(f"-- maximum: closed loop, {config['concurrency']} connections for "
          f"{config['throughput_seconds']:g} s")  # fmt: skip
    for mode in MODES:
        tp = {n: c[n][mode]["throughput"] for n in names}
        row(f"{MODE_NAMES[mode]} req/s", [cell(tp[n]["rps"], "{:.0f}") for n in names])
        row("  gateway CPU", [cell(tp[n]["cpu"].get("proxy"), "{:.0%}") for n in names])
        row("  gateway CPU µs / request",
            [cell(tp[n].get("proxy_cpu_us_per_request"), "{:.0f}") for n in names])  # fmt: skip
        row("  postgres CPU", [cell(tp[n]["cpu"].get("postgres"), "{:.0%}") for n in names])
        row("  fake + loadgen CPU", [
            cell(tp[n]["cpu"].get("fake", 0) + tp[n]["cpu"].get("loadgen", 0), "{:.0%}")
            for n in names
        ])  # fmt: skip
        row("  latency p50 ms", [cell(tp[n]["latency_ms"].get("p50")) for n in names])
        row("  errors", [str(tp[n]["errors"]) for n in names])
    print("-- audit chain (`enclave audit verify` after the gateway stopped)")
    row("records verified", ["-"] + [str(c[n]["audit"]["records"]) for n in names[1:]])
    row("chat calls answered (/metrics)", [str(c[n]["calls_answered"]) for n in names])
    row("verify took s", ["-"] + [cell(c[n]["audit"].get("seconds"), "{:.1f}")
                                  for n in names[1:]])  # fmt: skip
    row("gateway peak RSS MiB", [cell(c[n]["rss_mib"], "{:.0f}") for n in names])
    print()
    for name in AUDITED:
        for mode in MODES:
            ok = verdict[f"added_p50_{name}_{mode}"]
            extra = added(results, name, mode, "p50")
            print(f"{word(ok)}  {name:8} {MODE_NAMES[mode]:12} added p50 "
                  f"{cell(extra, '{:+.2f}')} ms ≤ {TARGET_ADDED_P50_MS:g} ms")  # fmt: skip
    for name in AUDITED:
        now, base = (
            added(results, name, "plain", "p50"),
            added(results, name + AT_BASE, "plain", "p50"),
        )
        if now is not None and base is not None:
            print(f"      {name:8} added p50, non-streamed: {now:+.2f} ms now against "
                  f"{base:+.2f} ms at base ({base - now:+.2f} ms saved)")  # fmt: skip
    for name in AUDITED:
        audit = c.get(name, {}).get("audit")
        detail = f"{audit['records']} records verified ≥ {audit['calls']} calls" if audit else ""
        print(f"{word(verdict[f'audit_{name}'])}  {name:8} audit chain: {detail}")
    print(f"{word(verdict['answers'])}  every answer 200 with the fake's content")
    met = not any(v is False for v in verdict.values())
    print(f"verdict: {'PASS' if met else 'FAIL'} (strict audit + key checks add ≤ "
          f"{TARGET_ADDED_P50_MS:g} ms p50 per call on SQLite and PostgreSQL)")  # fmt: skip
