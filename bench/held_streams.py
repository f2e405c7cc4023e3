"""Held streams through an audited gateway: the CPU one relayed event costs.

Part of ``bench/gateway_overhead.py`` (target of the speed issue: <= 10 us of gateway CPU
per relayed event with authentication, limits, metrics and strict audit on). N streams are
held at once against the slow fake, through ``enclave serve`` with ``auth.mode: on``, an
API key with a rate limit (``--rpm``, high enough never to refuse), strict audit on SQLite
and ``/metrics``; the gateway's CPU time over the burst, divided by the events it relayed
(N x (tokens + role chunk + finish chunk + [DONE])), is the figure, all in: each call's
key check, rate limit and audit record are shared among its events. The relay's own cost
is the marginal one: the same burst with three times the tokens, the extra CPU over the
extra events. With ``--baseline-src``
the same gateway from another checkout runs in the same process of measurement, bursts
interleaved, so the ratio is read from one run; unless ``--no-nginx``, Debian's nginx
relays the same bursts too (no auth, no audit: the floor for a proxy on this machine).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.auth_overhead import make_key, run_gateway
from bench.machine import cpu_seconds
from bench.measure import Bench
from bench.nginx_proxy import run_nginx
from bench.overhead_report import BASELINE as BASE
from bench.overhead_report import ENCLAVE as THIS
from bench.overhead_report import HELD_US_TARGET as TARGET_US
from bench.overhead_report import NGINX
from bench.servers import HOST, MODEL, PROMPT, Server


def audited_streams(
    bench: Bench, slow: Server, logs: Path, proxy_cpu: int | None, rounds: int
) -> dict[str, Any]:
    """Bursts of held streams through the audited gateway(s), interleaved; CPU per event."""
    a = bench.args
    sources = {THIS: None, **({BASE: str(a.baseline_src)} if a.baseline_src else {})}
    names = [*sources, *([NGINX] if a.nginx else [])]
    found: dict[str, list[float]] = {name: [] for name in names}
    marginal: dict[str, list[float]] = {name: [] for name in names}
    failed: dict[str, int] = dict.fromkeys(names, 0)
    with ExitStack() as stack:
        proxies: dict[str, tuple[Server, str | None]] = {}
        for name, src in sources.items():
            gateway = stack.enter_context(
                run_gateway(f"held-{name}", slow, proxy_cpu, logs, None, src=src)
            )
            gateway.key = make_key(gateway)
            proxies[name] = (gateway.server, gateway.key)
        if a.nginx:  # the floor: a C proxy relaying the same events, nothing else
            proxies[NGINX] = (stack.enter_context(run_nginx(slow, proxy_cpu, logs)), None)
        for turn in range(rounds):
            for name, (server, key) in proxies.items():
                tokens = a.streams_tokens
                cpu, bad = one_burst(bench, server, key, a.streams, tokens)
                more, worse = one_burst(bench, server, key, a.streams, 3 * tokens)
                us = cpu / (a.streams * (tokens + 3)) * 1e6
                extra = (more - cpu) / (a.streams * 2 * tokens) * 1e6
                print(f"  round {turn + 1}: {name} {us:.1f} us per event all in, "
                      f"{extra:.1f} us marginal", flush=True)  # fmt: skip
                found[name].append(us)
                marginal[name].append(extra)
                failed[name] += bad + worse
    out: dict[str, Any] = {
        "streams": a.streams,
        "tokens_per_stream": a.streams_tokens,
        "rounds": rounds,
        "us_per_event": {name: min(values) for name, values in found.items()},
        "marginal_us_per_event": {name: min(values) for name, values in marginal.items()},
        "all_us_per_event": found,
        "all_marginal_us_per_event": marginal,
        "failed": failed,
    }
    for other, suffix in ((NGINX, "nginx"), (BASE, "base")):  # enclave / the other
        if other in found:
            out[f"ratio_to_{suffix}"] = out["us_per_event"][THIS] / out["us_per_event"][other]
            floor = out["marginal_us_per_event"][other]
            ours = out["marginal_us_per_event"][THIS]
            out[f"marginal_ratio_to_{suffix}"] = ours / floor if floor else None
    out["pass"] = out["us_per_event"][THIS] <= TARGET_US and not any(failed.values())
    return out


def one_burst(
    bench: Bench, server: Server, key: str | None, streams: int, tokens: int
) -> tuple[float, int]:
    """The proxy's CPU seconds over one burst of ``tokens``-token streams; failed ones."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    message = {"role": "user", "content": PROMPT}
    body = {"model": MODEL, "messages": [message], "stream": True, "max_tokens": tokens}
    request = loadgen.Request.chat(HOST, server.port, body, expect_tokens=tokens, headers=headers)
    bench.verify(server.name, request, count=2)
    pid = server.pid
    before = cpu_seconds(pid)
    run = bench.run(loadgen.burst(request, streams), 300)
    return cpu_seconds(pid) - before, len(run.failed)
