"""Targets, verdicts and the printed table of ``bench/gateway_overhead.py``."""

from __future__ import annotations

from typing import Any

ADDED_P50_TARGET_MS = 1.0
ADDED_P99_TARGET_MS = 5.0
PER_CORE_RATIO_TARGET = 3.0
DIRECT, ENCLAVE, LITELLM, ENCLAVE_LOG = "direct", "enclave", "litellm", "enclave+log"
BASELINE = "enclave@base"  # --baseline-src: enclave served from another commit's src/
NGINX = "nginx"  # Debian's nginx, a plain reverse proxy: the floor for a proxy
MODES = ("plain", "stream")
HELD_US_TARGET = 10.0  # gateway CPU per relayed event, audited held streams
WIDTH = 14


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    """PASS (True) / FAIL (False) / not measured (None) per target.

    Added latency: enclave's p50 (p99) at the fixed rate minus the direct p50 (p99), both
    error-free; streams count to ``[DONE]``. Per core: enclave's requests per CPU-second
    of its process over LiteLLM's, at maximum throughput.
    """
    t = results["targets"]
    out: dict[str, bool | None] = {}
    for mode in MODES:
        direct = t[DIRECT][mode]["latency"]
        gateway = t[ENCLAVE][mode]["latency"]
        clean = gateway["errors"] == 0 and direct["errors"] == 0
        added50 = gateway["latency_ms"]["p50"] - direct["latency_ms"]["p50"]
        added99 = gateway["latency_ms"]["p99"] - direct["latency_ms"]["p99"]
        out[f"added_p50_{mode}"] = clean and added50 <= ADDED_P50_TARGET_MS
        out[f"added_p99_{mode}"] = clean and added99 <= ADDED_P99_TARGET_MS
        ratio = per_core_ratio(t, mode)
        out[f"per_core_{mode}"] = None if ratio is None else ratio >= PER_CORE_RATIO_TARGET
    streams = results.get("streams")
    out["streams"] = None if streams is None else bool(streams["pass"])
    held = (streams or {}).get("audited")
    out["held_streams_cpu"] = None if held is None else bool(held["pass"])
    return out


def per_core_ratio(targets: dict[str, Any], mode: str) -> float | None:
    if LITELLM not in targets:
        return None
    ours = targets[ENCLAVE][mode]["throughput"].get("rps_per_proxy_core")
    theirs = targets[LITELLM][mode]["throughput"].get("rps_per_proxy_core")
    return float(ours) / float(theirs) if ours and theirs else None


def raw_ratio(targets: dict[str, Any], mode: str) -> float | None:
    if LITELLM not in targets:
        return None
    ours = float(targets[ENCLAVE][mode]["throughput"]["rps"])
    theirs = float(targets[LITELLM][mode]["throughput"]["rps"])
    return ours / theirs if theirs > 0 else None


def word(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def row(label: str, values: list[str], note: str = "") -> None:
    cells = "".join(f"{v:>{WIDTH}}" for v in values)
    print(f"{label:30}{cells}" + (f"  {note}" if note else ""))


def report(
    results: dict[str, Any], config: dict[str, Any], verdict: dict[str, bool | None]
) -> None:
    t = results["targets"]
    names = [n for n in (DIRECT, BASELINE, ENCLAVE, NGINX, LITELLM, ENCLAVE_LOG) if n in t]
    print()
    header(results, config)
    row("", names)
    row("proxy CPU when idle", [cell(t[n].get("idle_cpu"), "{:.1%}") for n in names])
    for mode in MODES:
        print(f"-- {'non-streamed' if mode == 'plain' else 'streamed (timed to [DONE])'}")
        throughput_rows(t, names, mode, config, verdict)
        latency_rows(t, names, mode, config, verdict)
    streams = results.get("streams")
    if streams:
        streams_rows(streams, verdict)
    if NGINX in t:
        nginx_rows(t)
    errors(t, names)
    intruders(t, names, config)
    print()
    print("verdict: " + "  ".join(f"{k} {word(v)}" for k, v in verdict.items()))


def header(results: dict[str, Any], config: dict[str, Any]) -> None:
    print(
        f"gateway_overhead  replies of {config['tokens']} tokens; fixed rate "
        f"{config['rate']:g} req/s for {config['latency_seconds']:g} s; closed loop "
        f"{config['concurrency']} connections for {config['throughput_seconds']:g} s; "
        f"warm-up {config['warmup']:g} s each"
    )
    cpus = results["cpus"]
    print(
        f"CPUs: proxy on {cpus['proxy']}, fake upstream + load generator on "
        f"{cpus['load_and_fake']} ({config['cpus']} in all, "
        f"{(config['cpu_busy_before'] or 0):.0%} busy before); LiteLLM {config['litellm']}"
    )
    noise = results.get("machine", {})
    gaps = noise.get("gaps", {})
    if gaps:
        text = "; ".join(
            f"CPU {cpu}: longest {g['max_ms']:.1f} ms, {g['over_1ms']} over 1 ms"
            for cpu, g in gaps.items()
        )
        print(f"machine noise (a busy loop's scheduling gaps in {noise['seconds']:g} s): {text}")
    if "steal" in noise:
        print(f"CPU time stolen by the hypervisor during the run: {noise['steal']:.2%}")


def others(summary: dict[str, Any], cpu: int | None) -> float | None:
    """How much of the proxy's CPU something other than the proxy used (other work)."""
    busy = summary.get("cpu_busy", {}).get(str(cpu))
    own = summary["cpu"].get("proxy")
    return None if busy is None or own is None else max(busy - own, 0.0)


def throughput_rows(
    t: dict[str, Any],
    names: list[str],
    mode: str,
    config: dict[str, Any],
    verdict: dict[str, bool | None],
) -> None:
    thr = {n: t[n][mode]["throughput"] for n in names}
    row(
        f"max req/s ({config['concurrency']} conns)",
        [cell(thr[n]["rps"], "{:.0f}") for n in names],
    )
    row("  proxy CPU", [cell(thr[n]["cpu"].get("proxy"), "{:.0%}") for n in names])
    row(
        "  others on the proxy's CPU",
        [cell(others(thr[n], config["proxy_cpu"]), "{:.0%}") for n in names],
    )
    row("  fake upstream CPU", [cell(thr[n]["cpu"].get("fake"), "{:.0%}") for n in names])
    row("  load generator CPU", [cell(thr[n]["cpu"].get("loadgen"), "{:.0%}") for n in names])
    row("  req/s per proxy core", [cell(thr[n].get("rps_per_proxy_core"), "{:.0f}") for n in names])
    row(
        "  proxy CPU/request (us)",
        [cell(thr[n].get("proxy_cpu_us_per_request"), "{:.0f}") for n in names],
    )
    row("  latency p50 (ms)", [cell(thr[n]["latency_ms"].get("p50"), "{:.1f}") for n in names])
    row("  latency p99 (ms)", [cell(thr[n]["latency_ms"].get("p99"), "{:.1f}") for n in names])
    row("  errors", [str(thr[n]["errors"]) for n in names])
    ratio, raw = per_core_ratio(t, mode), raw_ratio(t, mode)
    if ratio is not None and raw is not None:
        print(
            f"  enclave / LiteLLM: {ratio:.2f}x requests per proxy core "
            f"({raw:.2f}x requests/s)  target >= {PER_CORE_RATIO_TARGET:g}x  "
            f"{word(verdict[f'per_core_{mode}'])}"
        )


def latency_rows(
    t: dict[str, Any],
    names: list[str],
    mode: str,
    config: dict[str, Any],
    verdict: dict[str, bool | None],
) -> None:
    rate = config["rate"]
    lat = {n: t[n][mode]["latency"] for n in names}
    over = {n: t[n][mode]["throughput"]["rps"] < rate for n in names if n != DIRECT}

    def mark(n: str, text: str) -> str:
        return text + ("*" if over.get(n) else "")

    direct = lat[DIRECT]["latency_ms"]
    for q in ("p50", "p99"):
        row(
            f"latency {q} at {rate:g}/s (ms)",
            [mark(n, cell(lat[n]["latency_ms"].get(q))) for n in names],
        )
    for q in ("p50", "p99"):
        added = [
            "-" if n == DIRECT else mark(n, f"{lat[n]['latency_ms'][q] - direct[q]:+.2f}")
            for n in names
        ]
        target = ADDED_P50_TARGET_MS if q == "p50" else ADDED_P99_TARGET_MS
        note = f"enclave: <= {target:g} ms  {word(verdict[f'added_{q}_{mode}'])}"
        row(f"  added {q} (ms)", added, note)
    if mode == "stream":
        ttft = {n: lat[n].get("ttft_ms", {}) for n in names}
        for q in ("p50", "p99"):
            row(f"  TTFT {q} (ms)", [mark(n, cell(ttft[n].get(q))) for n in names])
        added = [
            "-" if n == DIRECT else mark(n, f"{ttft[n]['p50'] - ttft[DIRECT]['p50']:+.2f}")
            for n in names
        ]
        row("  added TTFT p50 (ms)", added)
    row(
        "  proxy CPU/request (us)",
        [mark(n, cell(lat[n].get("proxy_cpu_us_per_request"), "{:.0f}")) for n in names],
    )
    row("  errors", [str(lat[n]["errors"]) for n in names])
    for n in names:
        low = t[n][mode].get("latency_low")
        if low:
            ms = low["latency_ms"]
            extra = f", TTFT p50 {low['ttft_ms']['p50']:.2f} ms" if "ttft_ms" in low else ""
            print(
                f"  * {n} cannot sustain {rate:g}/s (max {t[n][mode]['throughput']['rps']:.0f}):"
                f" requests queue. At {low['rate']:g}/s: p50 {ms.get('p50', 0):.2f} ms, "
                f"p99 {ms.get('p99', 0):.2f} ms{extra} (added p50 "
                f"{ms.get('p50', 0) - direct['p50']:+.2f} ms vs direct at {rate:g}/s), "
                f"{low['errors']} errors"
            )


def streams_rows(streams: dict[str, Any], verdict: dict[str, bool | None]) -> None:
    n = streams["streams"]
    print(
        f"-- {n} streams at once ({streams['tokens_per_stream']} chunks {streams['itl_ms']} ms "
        f"apart + [DONE]; ideal {streams['ideal_s']:.1f} s)"
    )
    for label, s in (("direct to the fake", streams["direct"]), ("through enclave", streams)):
        lat, ttft = s["latency_ms"], s["ttft_ms"]
        print(
            f"  {label:19} {s['completed']}/{n} complete, {s['failed']} failed; "
            f"wall {s['wall_s']:.2f} s; TTFT p50 {ttft.get('p50', 0):.0f} ms, "
            f"max {ttft.get('max', 0):.0f} ms; stream max {lat.get('max', 0) / 1e3:.2f} s"
        )
    cpu = ", ".join(f"{k} {v:.0%}" for k, v in streams["cpu"].items())
    print(
        f"  enclave: RSS {streams['rss_idle_mib']:.0f} MiB idle, {streams['rss_peak_mib']:.0f} "
        f"MiB peak (VmHWM {streams['rss_hwm_mib']:.0f}); CPU {cpu} (proxy peak "
        f"{streams['proxy_cpu_peak']:.0%}); {streams['proxy_cpu_us_per_event']:.0f} us of proxy "
        f"CPU per relayed event  {word(verdict['streams'])}"
    )
    if streams["first_error"]:
        print(f"  first error: {streams['first_error']}")
    if streams.get("audited"):
        held_rows(streams["audited"])
        print(f"  {word(verdict['held_streams_cpu'])}")


def nginx_rows(t: dict[str, Any]) -> None:
    """enclave against nginx, the floor for a proxy: req/s per core, added p50/p99."""
    print("-- enclave / nginx")
    for mode in MODES:
        thr = {n: t[n][mode]["throughput"] for n in (ENCLAVE, NGINX)}
        per = [thr[n].get("rps_per_proxy_core") for n in (ENCLAVE, NGINX)]
        ratio = f"{per[0] / per[1]:.2f}x" if per[0] and per[1] else "-"
        direct = t[DIRECT][mode]["latency"]["latency_ms"]
        added = {
            q: [t[n][mode]["latency"]["latency_ms"][q] - direct[q] for n in (ENCLAVE, NGINX)]
            for q in ("p50", "p99")
        }
        print(
            f"  {mode:6} req/s per proxy core {ratio}; added p50 {added['p50'][0]:+.2f} vs "
            f"{added['p50'][1]:+.2f} ms; added p99 {added['p99'][0]:+.2f} vs "
            f"{added['p99'][1]:+.2f} ms"
        )


def held_rows(held: dict[str, Any]) -> None:
    """The lines of ``bench/held_streams.py``'s run."""
    n, tokens = held["streams"], held["tokens_per_stream"]
    print(
        f"-- {n} streams held through an audited gateway (auth, rate limit, metrics, strict "
        f"audit; {tokens} chunks each; best of {held['rounds']} interleaved rounds)"
    )
    for name, us in held["us_per_event"].items():
        note = f"  target <= {HELD_US_TARGET:g} us" if name == ENCLAVE else ""
        bad = held["failed"][name]
        extra = held["marginal_us_per_event"][name]
        print(f"  {name:<14} {us:6.1f} us of gateway CPU per relayed event all in, "
              f"{extra:5.1f} us marginal (the relay){note}"
              + (f"  ({bad} streams failed)" if bad else ""))  # fmt: skip
    for suffix, label in (("nginx", "nginx"), ("base", "enclave@base")):
        if f"ratio_to_{suffix}" in held:
            marginal = held.get(f"marginal_ratio_to_{suffix}")
            print(f"  enclave / {label}: {held[f'ratio_to_{suffix}']:.2f}x CPU per event all in, "
                  + (f"{marginal:.2f}x marginal" if marginal else "marginal n/a"))  # fmt: skip


def errors(t: dict[str, Any], names: list[str]) -> None:
    for name in names:
        for mode in MODES:
            for phase in ("throughput", "latency", "latency_low"):
                err = (t[name][mode].get(phase) or {}).get("first_error")
                if err:
                    print(f"  {name} {mode} {phase}: first error: {err}")


def intruders(t: dict[str, Any], names: list[str], config: dict[str, Any]) -> None:
    """Warn when other processes used the proxy's CPU during a throughput window."""
    for name in names:
        for mode in MODES:
            other = others(t[name][mode]["throughput"], config["proxy_cpu"])
            if other is not None and other > 0.05:
                print(
                    f"  warning: {name} {mode}: other processes used {other:.0%} of the proxy's "
                    "CPU during the throughput window; run again on an idle machine"
                )
