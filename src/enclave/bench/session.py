"""One ``enclave bench`` run: check the endpoint, calibrate, run each level, report.

:func:`run_bench` is what the CLI hands off to; :func:`measure` does the work and returns
a :class:`BenchResult` without writing anything (tests and ``verify`` use it too).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from enclave import __version__
from enclave.bench.client import BenchClient, Endpoint
from enclave.bench.live import Live
from enclave.bench.metrics import (
    Slo,
    SystemSample,
    attach_system,
    drift,
    summarize,
    timeseries,
)
from enclave.bench.results import BenchResult, LevelResult
from enclave.bench.runner import Load, Request, run_level
from enclave.bench.sysmon import SystemMonitor
from enclave.bench.workloads import (
    FixedPrompts,
    JsonlPrompts,
    SyntheticPrompts,
    WithImages,
    Workload,
    calibrated,
    calibration_texts,
    image_file_url,
    request_body,
    synthetic_image_url,
    user,
)
from enclave.errors import BenchError

T = TypeVar("T")
NICE_INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
WINDOWS_WANTED = 60
SYNTHETIC_IMAGES = 8
DEFAULT_PROMPT = "Explain in a few sentences what a load balancer does."


@dataclass(frozen=True)
class WorkloadSpec:
    prompts: tuple[str, ...] = ()
    input_len: int | None = None
    lang: str = "en"
    dataset: Path | None = None
    images: tuple[Path, ...] = ()
    image_size: tuple[int, int] | None = None
    images_per_request: int = 1


@dataclass(frozen=True)
class BenchOptions:
    url: str
    model: str
    api_key: str | None = None
    insecure: bool = False
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    request: Request | None = None  # model filled in from ``model`` when None
    loads: tuple[Load, ...] = (Load(requests=50),)
    timeout_s: float = 300.0
    interval_s: float | None = None
    slo: Slo = field(default_factory=Slo)
    server_pid: int | None = None
    sysmon: bool = True
    quiet: bool = False
    preflight: bool = True
    charts: bool = True

    @property
    def chat(self) -> Request:
        return self.request or Request(model=self.model)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (less CPU per request), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def nice_interval(duration_s: float) -> float:
    """The smallest of :data:`NICE_INTERVALS` giving at most about 60 windows."""
    for step in NICE_INTERVALS:
        if duration_s / step <= WINDOWS_WANTED:
            return float(step)
    return float(NICE_INTERVALS[-1])


def level_label(load: Load) -> str:
    label = f"concurrency {load.concurrency}"
    if load.rate is not None:
        label += f", {load.rate:g} req/s" + (" poisson" if load.poisson else "")
    return label


async def _calibrate(client: BenchClient, request: Request, lang: str) -> tuple[int | None, ...]:
    """Prompt tokens the server reports for the two probe texts (None: no usage)."""
    counts: list[int | None] = []
    for text in calibration_texts(lang):
        body = request_body(request.model, user(text), max_tokens=1, stream=False)
        sample = await client.chat(body)
        counts.append(sample.prompt_tokens if sample.ok else None)
    return tuple(counts)


async def build_workload(
    spec: WorkloadSpec, client: BenchClient, request: Request, seed: int
) -> Workload:
    base: Workload
    if spec.dataset is not None:
        base = JsonlPrompts(spec.dataset)
    elif spec.input_len is not None:
        small, large = await _calibrate(client, request, spec.lang)
        base = SyntheticPrompts(
            spec.lang, spec.input_len, calibrated(spec.lang, small, large), seed
        )
    else:
        base = FixedPrompts(list(spec.prompts) or [DEFAULT_PROMPT])
    urls = [image_file_url(path) for path in spec.images]
    if spec.image_size is not None:
        urls += [synthetic_image_url(spec.image_size, seed + k) for k in range(SYNTHETIC_IMAGES)]
    return WithImages(base, urls, spec.images_per_request) if urls else base


async def _preflight(client: BenchClient, workload: Workload, request: Request) -> None:
    body = request_body(
        request.model, workload.prompt(0), max_tokens=request.max_tokens,
        stream=request.stream, extra=request.extra,
    )  # fmt: skip
    sample = await client.chat(body)
    if not sample.ok:
        raise BenchError(
            f"the first request to {client.endpoint.root} failed ({sample.error}): {sample.detail}"
        )


async def _level(
    client: BenchClient,
    workload: Workload,
    options: BenchOptions,
    load: Load,
    monitor: SystemMonitor | None,
) -> LevelResult:
    label = level_label(load)
    live = None if options.quiet else Live(label, total=load.requests, duration_s=load.duration_s)
    system: list[SystemSample] = []
    began = time.perf_counter()
    tasks = [asyncio.create_task(live.run())] if live else []
    if monitor is not None:
        every = min(options.interval_s or 1.0, 5.0) / 2
        tasks.append(asyncio.create_task(monitor.run(began, every, system)))
    try:
        run = await run_level(client, workload, options.chat, load, live.add if live else None)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if live:
            live.close()
    shift = run.started - began  # the warm-up: samples count from the measured start
    system = [replace(s, t=s.t - shift) for s in system if s.t >= shift]
    interval = options.interval_s or nice_interval(run.duration_s)
    windows = timeseries(run.samples, interval, run.duration_s)
    attach_system(windows, system)
    summary = summarize(run.samples, run.duration_s, options.slo)
    return LevelResult(label, load, run, summary, windows, system, drift(windows))


def config_json(options: BenchOptions, workload: Workload, monitor_note: str) -> dict[str, Any]:
    request = options.chat
    return {
        "enclave_version": __version__,
        "url": Endpoint.parse(options.url).root,
        "model": request.model,
        "stream": request.stream,
        "max_tokens": request.max_tokens,
        "extra_body": request.extra,
        "workload": workload.describe(),
        "loads": [load.as_json() for load in options.loads],
        "timeout_s": options.timeout_s,
        "slo_ms": options.slo.as_json(),
        "system_monitor": monitor_note,
    }


async def measure(options: BenchOptions) -> BenchResult:
    """Every level of ``options``, measured; nothing written."""
    endpoint = Endpoint.parse(options.url, api_key=options.api_key, insecure=options.insecure)
    client = BenchClient(endpoint, timeout_s=options.timeout_s)
    monitor = None
    if options.sysmon:
        monitor = SystemMonitor.for_endpoint(endpoint.host, endpoint.port, options.server_pid)
    try:
        seed = options.loads[0].seed if options.loads else 0
        workload = await build_workload(options.workload, client, options.chat, seed)
        if options.preflight:
            await _preflight(client, workload, options.chat)
        levels = []
        for load in options.loads:
            levels.append(await _level(client, workload, options, load, monitor))
    finally:
        await client.aclose()
    note = _monitor_note(options, monitor)
    return BenchResult(config_json(options, workload, note), levels)


def _monitor_note(options: BenchOptions, monitor: SystemMonitor | None) -> str:
    if not options.sysmon:
        return "off (--no-sysmon)"
    if monitor is None:
        return "not sampled: the server is not on this machine, or psutil is missing"
    if monitor.pid is None:
        return "not sampled: no process listening on the port was found (try --server-pid)"
    gpu = "and GPU memory (nvidia-smi)" if monitor.gpu else "(no nvidia-smi: no GPU memory)"
    return f"process {monitor.pid} and its children {gpu}"


def run_bench(options: BenchOptions, out: Path) -> int:
    """Measure, write every report file into ``out`` and print the summary table."""
    from enclave.bench.report import summary_table, write_all

    result = run_async(measure(options))
    files = write_all(result, out, charts=options.charts)
    print(summary_table(result))
    for note in files.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"\nreports in {out}: " + ", ".join(path.name for path in files.written))
    failed = all(level.summary.completed == 0 for level in result.levels)
    return 1 if failed else 0


def levels_of(concurrency: Sequence[int], base: Load) -> tuple[Load, ...]:
    """``base`` at each concurrency of a sweep."""
    return tuple(replace(base, concurrency=c) for c in concurrency)
