"""``enclave verify``: the acceptance gates of a deployment, as a pass/fail checklist.

Gates, in order (thresholds from a YAML file; :class:`Thresholds` holds the defaults):

1. ``GET /health`` answers 200;
2. ``GET /v1/models`` lists the expected model;
3. a chat completion works (200 and some content);
4. a streamed one works (content chunks, then ``data: [DONE]``);
5. 10 calls one after another: ≥ 95 % succeed;
6. one user: end-to-end P50 ≤ 2 s and P95 ≤ 5 s (two gates);
7. 10 concurrent users: ≥ 2 requests/s;
8. ≥ 99 % of every load request of the run succeeded;
9. an empty ``messages`` and an over-long prompt are answered with a clean 4xx (an error
   status with a JSON body; no 200, no 5xx, no dropped connection);
10. optionally a stability run (``--soak 1h``): success ≥ 99 % over it, and, if set, no
    window's P95 above a limit.

The result is a table of ✅/❌ rows, a report file and the exit status (0: every gate
passed; 1: one failed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from enclave.bench.client import CHAT_PATH, BenchClient, Endpoint
from enclave.bench.metrics import Sample, Window, describe, drift, summarize, timeseries
from enclave.bench.runner import Load, Request, run_level
from enclave.bench.tables import md_table, text_table
from enclave.bench.workloads import FixedPrompts, request_body, user
from enclave.durations import parse_duration
from enclave.errors import BenchError, ConfigError

PASS, FAIL, SKIP = "✅", "❌", "➖"
OVERLONG_DEFAULT_WORDS = 300_000  # beyond any model's context when /v1/models does not say
DEFAULT_PROMPT = "用一句话解释什么是负载均衡。"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Smoke(_Section):
    calls: int = Field(10, ge=1)
    min_success: float = Field(0.95, ge=0, le=1)


class SingleUser(_Section):
    requests: int = Field(20, ge=1)
    p50_s: float = Field(2.0, gt=0)
    p95_s: float = Field(5.0, gt=0)


class Throughput(_Section):
    concurrency: int = Field(10, ge=1)
    requests: int = Field(50, ge=1)
    min_rps: float = Field(2.0, ge=0)


class Soak(_Section):
    enabled: bool = False
    duration: str = "1h"
    concurrency: int = Field(10, ge=1)
    min_success: float = Field(0.99, ge=0, le=1)
    max_window_p95_s: float | None = Field(None, gt=0)
    interval: str = "1m"

    @field_validator("duration", "interval")
    @classmethod
    def _seconds(cls, value: str) -> str:
        parse_duration(value)
        return value


class Thresholds(_Section):
    """Every gate's threshold; a YAML file overrides any of them."""

    model: str | None = None
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = Field(64, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    health: bool = True
    smoke: Smoke = Field(default_factory=Smoke)
    single_user: SingleUser = Field(default_factory=SingleUser)
    throughput: Throughput = Field(default_factory=Throughput)
    overall_min_success: float = Field(0.99, ge=0, le=1)
    bad_input: bool = True
    overlong_words: int | None = Field(None, ge=1)
    soak: Soak = Field(default_factory=Soak)


def load_thresholds(path: Path | None) -> Thresholds:
    """The defaults, overridden by ``path`` (YAML); ConfigError (one line) if bad."""
    if path is None:
        return Thresholds()
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # PyYAML's complaint, in one line
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path} is not valid YAML: {where}{problem}") from None
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def defaults_yaml() -> str:
    import yaml

    text: str = yaml.safe_dump(Thresholds().model_dump(), sort_keys=False, allow_unicode=True)
    return "# enclave verify thresholds (the defaults)\n" + text


@dataclass
class Gate:
    name: str
    threshold: str
    measured: str
    passed: bool | None  # None: skipped
    detail: str = ""

    @property
    def mark(self) -> str:
        return SKIP if self.passed is None else PASS if self.passed else FAIL


@dataclass
class Verdict:
    url: str
    model: str | None
    gates: list[Gate] = field(default_factory=list)
    soak_windows: list[Window] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(gate.passed is not False for gate in self.gates)

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "model": self.model,
            "passed": self.passed,
            "gates": [asdict(gate) for gate in self.gates],
            "soak_windows": [w.as_json() for w in self.soak_windows],
        }


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.3f} s"


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


class Verifier:
    """Runs the gates against one endpoint; every load request is kept for gate 8."""

    def __init__(self, endpoint: Endpoint, thresholds: Thresholds, soak_s: float | None) -> None:
        self.endpoint, self.t, self.soak_s = endpoint, thresholds, soak_s
        self.client = BenchClient(endpoint, timeout_s=thresholds.timeout_s)
        self.model = thresholds.model
        self.max_model_len: int | None = None
        self.load_samples: list[Sample] = []
        self.verdict = Verdict(endpoint.root, self.model)

    # --- plain HTTP ----------------------------------------------------------------------

    async def _get(self, path: str) -> tuple[int, Any]:
        return await self._call("GET", path)

    async def _post(self, body: dict[str, Any]) -> tuple[int, Any]:
        return await self._call("POST", CHAT_PATH, body)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One plain request; its status and JSON body (``None`` when not JSON)."""
        import httpx

        verify = self.endpoint.tls is not None and self.endpoint.tls.check_hostname
        async with httpx.AsyncClient(
            trust_env=False, timeout=self.t.timeout_s, verify=verify or False,
            headers=self.endpoint.headers(),
        ) as http:  # fmt: skip
            response = await http.request(method, self.endpoint.root + path, json=body)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    # --- gates ---------------------------------------------------------------------------

    def add(self, gate: Gate) -> None:
        self.verdict.gates.append(gate)
        print(f"{gate.mark} {gate.name}: {gate.measured}", file=sys.stderr, flush=True)

    async def health(self) -> None:
        if not self.t.health:
            self.add(Gate("/health is 200", "200", "not checked", None))
            return
        try:
            status, _ = await self._get("/health")
        except Exception as exc:
            self.add(Gate("/health is 200", "200", "no answer", False, str(exc)))
            return
        self.add(Gate("/health is 200", "200", str(status), status == 200))

    async def models(self) -> None:
        name = "/v1/models lists the model"
        try:
            status, body = await self._get("/v1/models")
        except Exception as exc:
            self.add(Gate(name, str(self.model or "a model"), "no answer", False, str(exc)))
            return
        cards = body.get("data") if isinstance(body, dict) else None
        cards = [c for c in cards if isinstance(c, dict)] if isinstance(cards, list) else []
        ids = [str(card.get("id")) for card in cards]
        if self.model is None and ids:
            self.model = self.verdict.model = ids[0]
        for card in cards:
            if card.get("id") == self.model and isinstance(card.get("max_model_len"), int):
                self.max_model_len = card["max_model_len"]
        listed = ", ".join(ids[:5]) or f"HTTP {status}, none"
        passed = status == 200 and self.model in ids
        self.add(Gate(name, str(self.model or "a model"), listed, passed))

    def body(self, *, stream: bool) -> bytes:
        return request_body(
            self.model or "", user(self.t.prompt), max_tokens=self.t.max_tokens, stream=stream
        )

    async def one_chat(self, name: str, *, stream: bool) -> None:
        sample = await self.client.chat(self.body(stream=stream))
        passed = sample.ok and sample.chunks > 0
        if sample.ok:
            measured = f"{sample.tokens_out} tokens in {_s(sample.e2e)}"
        else:
            measured = f"{sample.error}"
        self.add(Gate(name, "200 with content", measured, passed, sample.detail))

    async def load(self, concurrency: int, requests: int | None, seconds: float | None) -> Any:
        workload = FixedPrompts([self.t.prompt])
        request = Request(self.model or "", self.t.max_tokens, stream=True)
        load = Load(concurrency=concurrency, requests=requests, duration_s=seconds)
        run = await run_level(self.client, workload, request, load)
        self.load_samples += run.samples
        return run

    async def smoke(self) -> None:
        s = self.t.smoke
        run = await self.load(1, s.calls, None)
        rate = summarize(run.samples, run.duration_s).success_rate
        passed = rate >= s.min_success
        self.add(Gate(f"{s.calls} calls succeed", f"≥ {_pct(s.min_success)}", _pct(rate), passed))

    async def single_user(self) -> None:
        s = self.t.single_user
        run = await self.load(1, s.requests, None)
        stats = describe(x.e2e for x in run.samples if x.ok)
        p50 = stats.median if stats else None
        p95 = stats.p95 if stats else None
        self.add(
            Gate("single user P50", f"≤ {s.p50_s:g} s", _s(p50), p50 is not None and p50 <= s.p50_s)
        )
        self.add(
            Gate("single user P95", f"≤ {s.p95_s:g} s", _s(p95), p95 is not None and p95 <= s.p95_s)
        )

    async def throughput(self) -> None:
        s = self.t.throughput
        run = await self.load(s.concurrency, s.requests, None)
        summary = summarize(run.samples, run.duration_s)
        rps = summary.request_throughput
        name = f"{s.concurrency} concurrent users"
        measured = f"{rps:.2f} req/s ({_pct(summary.success_rate)} ok)"
        self.add(Gate(name, f"≥ {s.min_rps:g} req/s", measured, rps >= s.min_rps))

    async def soak(self) -> None:
        s = self.t.soak
        seconds = self.soak_s or (parse_duration(s.duration).total_seconds() if s.enabled else None)
        if seconds is None:
            self.add(Gate("stability run", "optional (--soak 1h)", "not run", None))
            return
        run = await self.load(s.concurrency, None, seconds)
        summary = summarize(run.samples, run.duration_s)
        windows = timeseries(
            run.samples, parse_duration(s.interval).total_seconds(), run.duration_s
        )
        self.verdict.soak_windows = windows
        name = f"stability {seconds:g} s at {s.concurrency}"
        measured = f"{_pct(summary.success_rate)} of {summary.requests}"
        self.add(
            Gate(name, f"≥ {_pct(s.min_success)}", measured, summary.success_rate >= s.min_success)
        )
        if s.max_window_p95_s is not None:
            worst = drift(windows).worst_p95_ms
            worst_s = worst / 1000 if worst is not None else None
            passed = worst_s is not None and worst_s <= s.max_window_p95_s
            limit = f"≤ {s.max_window_p95_s:g} s"
            self.add(Gate("stability: worst window P95", limit, _s(worst_s), passed))

    def overall(self) -> None:
        samples = self.load_samples
        rate = sum(1 for x in samples if x.ok) / len(samples) if samples else 0.0
        limit = f"≥ {_pct(self.t.overall_min_success)}"
        measured = f"{_pct(rate)} of {len(samples)}"
        self.add(Gate("success over the run", limit, measured, rate >= self.t.overall_min_success))

    async def bad_input(self, name: str, body: dict[str, Any]) -> None:
        try:
            status, answer = await self._post(body)
        except Exception as exc:
            self.add(Gate(name, "clean 4xx", "no answer", False, str(exc)))
            return
        clean = 400 <= status < 500 and isinstance(answer, dict)
        measured = f"HTTP {status}" + ("" if isinstance(answer, dict) else ", no JSON body")
        self.add(Gate(name, "clean 4xx", measured, clean))

    async def bad_inputs(self) -> None:
        if not self.t.bad_input:
            self.add(Gate("empty and over-long input", "clean 4xx", "not checked", None))
            return
        model = self.model or ""
        await self.bad_input("empty input", {"model": model, "messages": []})
        words = self.t.overlong_words
        if words is None:
            words = 2 * self.max_model_len + 1000 if self.max_model_len else OVERLONG_DEFAULT_WORDS
        text = " ".join(["token"] * words)
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
        await self.bad_input(f"over-long input ({words} words)", body)

    async def reachable(self) -> None:
        """BenchError (one line) when nothing answers at all: no gate could tell more."""
        import httpx

        try:
            await self._get("/health")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BenchError(f"cannot reach {self.endpoint.root}: {exc}") from None

    async def run(self) -> Verdict:
        steps: list[Callable[[], Awaitable[None]]] = [self.reachable, self.health, self.models]
        steps += [lambda: self.one_chat("chat works", stream=False)]
        steps += [lambda: self.one_chat("streaming works", stream=True)]
        steps += [self.smoke, self.single_user, self.throughput, self.soak]
        try:
            for step in steps:
                await step()
            self.overall()
            await self.bad_inputs()
        finally:
            await self.client.aclose()
        return self.verdict


def table(verdict: Verdict) -> str:
    head = ["", "gate", "threshold", "measured"]
    rows = [[g.mark, g.name, g.threshold, g.measured] for g in verdict.gates]
    result = "PASSED" if verdict.passed else "FAILED"
    model = verdict.model or "(none: the server listed no model)"
    return f"{text_table(head, rows, left=4)}\n\n{result}: {verdict.url} model {model}"


def markdown(verdict: Verdict) -> str:
    head = ["", "gate", "threshold", "measured", "detail"]
    rows = [[g.mark, g.name, g.threshold, g.measured, g.detail] for g in verdict.gates]
    result = "**PASSED**" if verdict.passed else "**FAILED**"
    parts = [
        "# enclave verify",
        "",
        f"- endpoint: {verdict.url}",
        f"- model: {verdict.model or '(none)'}",
    ]
    parts += [f"- verdict: {result}", "", md_table(head, rows)]
    if verdict.soak_windows:
        whead = ["window (s)", "requests", "success", "E2E p95 ms"]
        wrows = [
            [
                f"{w.start_s:.0f}–{w.end_s:.0f}",
                str(w.requests),
                _pct(w.success_rate) if w.success_rate is not None else "–",
                f"{w.e2e_p95_ms:.1f}" if w.e2e_p95_ms is not None else "–",
            ]
            for w in verdict.soak_windows
        ]
        parts += ["", "## Stability run, per window", "", md_table(whead, wrows)]
    return "\n".join(parts) + "\n"


def write_reports(verdict: Verdict, report: Path, json_path: Path | None) -> None:
    from enclave.errors import InvalidRequest

    try:
        report.write_text(markdown(verdict), encoding="utf-8")
        if json_path is not None:
            text = json.dumps(verdict.as_json(), indent=2, ensure_ascii=False)
            json_path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"cannot write the report: {exc.strerror or exc}") from None


def run_verify(
    endpoint: Endpoint,
    thresholds: Thresholds,
    *,
    soak_s: float | None,
    report: Path,
    json_path: Path | None,
) -> int:
    """Run every gate, print the table, write the reports; 0 if all passed, else 1."""
    from enclave.bench.session import run_async

    verdict = run_async(Verifier(endpoint, thresholds, soak_s).run())
    print(table(verdict))
    write_reports(verdict, report, json_path)
    print(f"report: {report}" + (f", {json_path}" if json_path else ""))
    return 0 if verdict.passed else 1
