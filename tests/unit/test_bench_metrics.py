"""The pure parts of enclave bench: metrics maths, parsing, workloads, compare, thresholds."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import pytest

from enclave.bench.compare import verdict
from enclave.bench.metrics import (
    Sample,
    Slo,
    describe,
    drift,
    goodput,
    parse_slo,
    percentile,
    summarize,
    timeseries,
)
from enclave.bench.runner import Load, parse_levels, parse_warmup
from enclave.bench.verify import Thresholds, load_thresholds
from enclave.bench.workloads import (
    FixedPrompts,
    SyntheticPrompts,
    WithImages,
    calibrated,
    parse_line,
    parse_size,
    request_body,
    synthetic_text,
)
from enclave.durations import parse_duration
from enclave.errors import ConfigError, InvalidRequest


def sample(
    *,
    start: float = 0.0,
    e2e: float = 1.0,
    ttft: float | None = 0.1,
    itl: list[float] | None = None,
    out: int | None = 10,
    error: str | None = None,
) -> Sample:
    return Sample(
        start=start, e2e=e2e, ttft=ttft, itl=array("d", itl or []),
        prompt_tokens=5, output_tokens=out, chunks=out or 0, error=error,
    )  # fmt: skip


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_describe_summarises_and_scales() -> None:
    stats = describe([0.001 * i for i in range(1, 101)], 1000)
    assert stats is not None
    assert stats.count == 100
    assert stats.mean == pytest.approx(50.5)
    assert stats.median == pytest.approx(50.5)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.min == pytest.approx(1.0)
    assert stats.max == pytest.approx(100.0)
    assert describe([]) is None


def test_tpot_is_decode_time_per_token_after_the_first() -> None:
    assert sample(e2e=1.0, ttft=0.1, out=10).tpot == pytest.approx(0.1)
    assert sample(out=1).tpot is None
    assert sample(ttft=None).tpot is None
    no_usage = sample(out=None)
    no_usage.chunks = 4
    assert no_usage.tokens_out == 4


def test_summarize_counts_throughput_errors_and_itl() -> None:
    samples = [
        sample(itl=[0.01, 0.02]),
        sample(itl=[0.03]),
        sample(error="http_503", out=None),
        sample(error="timeout", out=None),
        sample(error="http_503", out=None),
    ]
    summary = summarize(samples, duration_s=2.0)
    assert (summary.requests, summary.completed, summary.failed) == (5, 2, 3)
    assert summary.success_rate == pytest.approx(0.4)
    assert summary.errors == {"http_503": 2, "timeout": 1}
    assert summary.request_throughput == pytest.approx(1.0)
    assert summary.output_throughput == pytest.approx(10.0)
    assert summary.total_token_throughput == pytest.approx(15.0)
    assert summary.itl_ms is not None
    assert summary.itl_ms.count == 3
    assert summary.itl_ms.median == pytest.approx(20.0)
    assert summary.goodput is None
    assert json.loads(json.dumps(summary.as_json()))["errors"] == {"http_503": 2, "timeout": 1}


def test_goodput_counts_requests_meeting_every_slo() -> None:
    samples = [
        sample(ttft=0.1, e2e=1.0),
        sample(ttft=0.6, e2e=1.0),  # TTFT too slow
        sample(ttft=0.1, e2e=3.0),  # e2e too slow
        sample(error="http_500"),
    ]
    slo = Slo(ttft=500, e2el=2000)
    assert goodput(samples, slo, 2.0) == pytest.approx(0.5)
    assert goodput(samples, Slo(), 2.0) is None


def test_parse_slo() -> None:
    assert parse_slo(["ttft:500", "tpot:50,e2el:2000"]) == Slo(500, 50, 2000)
    for bad in (["ttft"], ["speed:3"], ["ttft:abc"], ["ttft:-1"]):
        with pytest.raises(InvalidRequest):
            parse_slo(bad)


def test_timeseries_buckets_requests_by_end_time() -> None:
    samples = [
        sample(start=0.0, e2e=0.5),
        sample(start=0.2, e2e=0.6),
        sample(start=1.0, e2e=0.5, error="timeout"),
        sample(start=2.5, e2e=0.4),
    ]
    windows = timeseries(samples, 1.0, 3.0)
    assert [w.requests for w in windows] == [2, 1, 1]
    assert [w.errors for w in windows] == [0, 1, 0]
    assert windows[1].success_rate == 0.0
    assert windows[0].request_throughput == pytest.approx(2.0)
    assert windows[0].e2e_p50_ms == pytest.approx(550.0)
    with pytest.raises(ValueError, match="positive"):
        timeseries(samples, 0, 3.0)


def test_drift_compares_first_and_last_windows() -> None:
    samples = [sample(start=float(t), e2e=0.1 * (t + 1)) for t in range(4)]
    result = drift(timeseries(samples, 1.0, 4.5))
    assert result.windows == 4
    assert result.first_p95_ms == pytest.approx(100.0)
    assert result.last_p95_ms == pytest.approx(400.0)
    assert result.p95_change == pytest.approx(3.0)
    assert result.worst_success_rate == 1.0


def test_parsers_of_the_command_line() -> None:
    assert parse_duration("90").total_seconds() == 90
    assert parse_duration("1.5m").total_seconds() == 90
    assert parse_duration("1h").total_seconds() == 3600
    for bad in ("0", "-3s", "soon"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_duration(bad)
    assert parse_warmup("20") == (20, 0.0)
    assert parse_warmup("5s") == (0, 5.0)
    with pytest.raises(InvalidRequest):
        parse_warmup("lots")
    assert parse_levels("1,5,10,20") == (1, 5, 10, 20)
    for bad in ("", "0", "a,b"):
        with pytest.raises(InvalidRequest):
            parse_levels(bad)


def test_load_needs_a_count_or_a_duration() -> None:
    with pytest.raises(InvalidRequest, match="not both"):
        Load(requests=5, duration_s=3)
    with pytest.raises(InvalidRequest, match="not both"):
        Load()
    with pytest.raises(InvalidRequest, match="concurrency"):
        Load(concurrency=0, requests=1)


def test_jsonl_lines_prompt_messages_and_sharegpt() -> None:
    assert parse_line({"prompt": "hi", "max_tokens": 7}).max_tokens == 7
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert parse_line({"messages": messages}).messages == tuple(messages)
    turns = [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}]
    turns += [{"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]
    prompt = parse_line({"conversations": turns})
    assert [m["content"] for m in prompt.messages] == ["q1", "a1", "q2"]
    for bad in ([1], {"text": "x"}, {"prompt": "x", "max_tokens": 0}):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_line(bad)


def test_synthetic_prompts_use_the_calibration() -> None:
    calibration = calibrated("en", 40, 552)  # 1 token per word, 8 tokens of overhead
    assert calibration.measured
    assert calibration.per_unit == pytest.approx(1.0)
    assert calibration.overhead == pytest.approx(8.0)
    prompts = SyntheticPrompts("en", 108, calibration, seed=1)
    texts = {prompts.prompt(i).messages[0]["content"] for i in range(5)}
    assert len(texts) == 5  # each its own
    assert all(len(text.split()) == 100 for text in texts)
    fallback = calibrated("zh", 20, 20)  # a server whose count did not grow
    assert not fallback.measured
    assert len(synthetic_text("zh", 50, __import__("random").Random(0))) == 50
    with pytest.raises(InvalidRequest):
        SyntheticPrompts("fr", 10, calibration)


def test_images_join_the_last_user_message_and_the_body_asks_for_usage() -> None:
    workload = WithImages(FixedPrompts(["look"]), ["data:image/png;base64,AA"], per_request=2)
    prompt = workload.prompt(0)
    content = prompt.messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "look"}
    assert [part["type"] for part in content[1:]] == ["image_url", "image_url"]
    body = json.loads(request_body("m", prompt, max_tokens=9, stream=True, extra={"seed": 1}))
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["seed"]) == (9, 1)
    assert parse_size("64x32") == (64, 32)
    with pytest.raises(InvalidRequest):
        parse_size("64")


def test_compare_verdicts() -> None:
    assert verdict(100.0, 80.0, higher_better=False) == "B better"
    assert verdict(100.0, 80.0, higher_better=True) == "B worse"
    assert verdict(100.0, 100.5, higher_better=True) == "same"
    assert verdict(None, 1.0, higher_better=True) == ""


def test_thresholds_defaults_and_yaml(tmp_path: Path) -> None:
    defaults = load_thresholds(None)
    assert (defaults.single_user.p50_s, defaults.single_user.p95_s) == (2.0, 5.0)
    assert defaults.throughput.min_rps == 2.0
    assert defaults.throughput.concurrency == 10
    assert defaults.smoke.calls == 10
    assert defaults.smoke.min_success == 0.95
    assert defaults.overall_min_success == 0.99
    path = tmp_path / "t.yaml"
    path.write_text("single_user: {p50_s: 0.5}\nsoak: {enabled: true, duration: 10m}\n")
    loaded = load_thresholds(path)
    assert loaded.single_user.p50_s == 0.5
    assert loaded.single_user.p95_s == 5.0
    assert loaded.soak.enabled
    path.write_text("single_user: {p50: 0.5}\n")
    with pytest.raises(ConfigError, match=r"single_user\.p50"):
        load_thresholds(path)
    path.write_text("soak: {duration: never}\n")
    with pytest.raises(ConfigError, match=r"soak\.duration"):
        load_thresholds(path)
    assert Thresholds().model_dump() == defaults.model_dump()
