"""``enclave bench`` against the real fake upstream (a separate process) with scripted delays.

Most runs call the CLI's ``main`` in this process (the same code as the console script,
talking over real loopback sockets); the error-line tests run the console script itself.
Latency assertions compare what was measured with what the fake was told to inject, with
generous tolerances (the fake's own asyncio sleeps wake late, never early).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from enclave.cli.main import main
from tests.fakes.procs import FakeUpstream, free_port
from tests.gateway import run_tls_gateway

pytestmark = pytest.mark.fake_upstream(vision=True)
ENCLAVE = str(Path(sys.executable).parent / "enclave")


@pytest.fixture(autouse=True)
def fresh(fake: FakeUpstream) -> None:
    fake.restore()
    fake.reset()


def bench(
    fake: FakeUpstream, out: Path, *args: str, code: int = 0, url: str | None = None
) -> dict[str, Any]:
    """``enclave bench`` against the fake (or ``url``); the bench.json it wrote."""
    argv = ["bench", "--url", url or fake.root + "/v1", "--model", "fake-model", "--quiet"]
    assert main([*argv, "--out", str(out), *args]) == code
    data: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return data


def test_ttft_itl_and_tpot_match_the_injected_delays(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(ttft_ms=80, itl_ms=15)
    data = bench(fake, tmp_path, "--concurrency", "4", "--requests", "12", "--max-tokens", "10")
    summary = data["levels"][0]["summary"]
    assert summary["completed"] == 12
    assert summary["total_output_tokens"] == 120  # from usage: 10 each
    assert summary["usage_missing"] == 0
    # A delay only adds, so each lower bound is exact. The upper bounds leave room for a
    # busy CI machine, yet catch a wrong definition (TTFT at the empty role chunk is ~0 ms,
    # at the last token ~215 ms). Accuracy itself (p99 error < 1 ms against the fake's own
    # send times) is measured by bench/bench_accuracy.py, not asserted here.
    assert 80 <= summary["ttft_ms"]["median"] <= 80 + 90
    assert summary["ttft_ms"]["min"] >= 80
    assert summary["itl_ms"]["count"] == 12 * 9
    assert 15 <= summary["itl_ms"]["median"] <= 15 + 25
    assert 15 <= summary["tpot_ms"]["median"] <= 15 + 25
    expected_e2e = 80 + 9 * 15
    assert expected_e2e <= summary["e2e_ms"]["median"] <= expected_e2e + 150


def test_percentiles_follow_a_scripted_slow_request(fake: FakeUpstream, tmp_path: Path) -> None:
    # Every 10th request has a 300 ms TTFT, the others 40 ms: of 20 requests two are slow.
    fake.configure(ttft_ms=40, script=",".join(["ok"] * 9 + ["ttft:300"]))
    data = bench(
        fake, tmp_path, "--requests", "20", "--max-tokens", "3", "--no-preflight",
        "--goodput", "ttft:200",
    )  # fmt: skip
    summary = data["levels"][0]["summary"]
    ttft = summary["ttft_ms"]
    with (tmp_path / "requests.csv").open() as rows:
        each = sorted(float(row["ttft_ms"]) for row in csv.DictReader(rows))
    # a delay only adds: the two scripted ones are the slowest, above 300 ms, the rest not
    assert each[0] >= 40
    assert each[17] < 300 <= each[18]
    # the percentiles, linear between closest ranks of the 20 measured (as numpy)
    assert ttft["median"] == pytest.approx((each[9] + each[10]) / 2, abs=0.01)
    assert ttft["p90"] == pytest.approx(each[17] + 0.1 * (each[18] - each[17]), abs=0.01)
    assert ttft["p95"] == pytest.approx(each[18] + 0.05 * (each[19] - each[18]), abs=0.01)
    assert ttft["max"] == pytest.approx(each[19], abs=0.01)
    rate = summary["request_throughput"]
    assert summary["goodput"] == pytest.approx(rate * 18 / 20)


def test_errors_are_counted_by_type(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(script="ok,status:503,drop:2,error:3,status:429,end:2")
    data = bench(
        fake, tmp_path, "--concurrency", "4", "--requests", "24", "--max-tokens", "6",
        "--no-preflight",
    )  # fmt: skip
    summary = data["levels"][0]["summary"]
    assert summary["errors"] == {
        "disconnected": 4,
        "http_429": 4,
        "http_503": 4,
        "incomplete": 4,
        "stream_error": 4,
    }
    assert summary["completed"] == 4
    assert summary["success_rate"] == pytest.approx(4 / 24)
    with (tmp_path / "requests.csv").open() as rows:
        kinds = [row["error"] for row in csv.DictReader(rows)]
    assert sorted(set(kinds)) == [
        "", "disconnected", "http_429", "http_503", "incomplete", "stream_error"
    ]  # fmt: skip


def test_a_stalled_stream_times_out(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(stall_after=1)
    data = bench(
        fake, tmp_path, "--requests", "2", "--concurrency", "2", "--timeout", "0.3s",
        "--no-preflight", code=1,  # no request succeeded
    )  # fmt: skip
    summary = data["levels"][0]["summary"]
    assert summary["errors"] == {"timeout": 2}
    fake.configure(stall_after=None)
    fake.wait_stats(lambda stats: stats["in_flight"] == 0)


def test_a_sweep_writes_every_report(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(ttft_ms=5, itl_ms=1)
    data = bench(
        fake, tmp_path, "--concurrency", "1,4", "--requests", "8", "--max-tokens", "4",
        "--ramp-up", "0.2s",
    )  # fmt: skip
    assert [level["load"]["concurrency"] for level in data["levels"]] == [1, 4]
    assert all(level["timeseries"] for level in data["levels"])
    with (tmp_path / "summary.csv").open() as rows:
        summary_rows = list(csv.DictReader(rows))
    assert [row["concurrency"] for row in summary_rows] == ["1", "4"]
    assert float(summary_rows[1]["ttft_median_ms"]) >= 5
    with (tmp_path / "requests.csv").open() as rows:
        assert len(list(csv.DictReader(rows))) == 16
    assert (tmp_path / "timeseries.csv").read_text().startswith("level,start_s")
    for name in ("latency.png", "throughput.png", "ttft_distribution.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert image.width > 300
    page = (tmp_path / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3
    assert "http://" not in page.replace(fake.root, "")  # nothing fetched from elsewhere
    report = (tmp_path / "report.md").read_text()
    assert "| concurrency 4 |" in report
    assert "![latency.png](latency.png)" in report


def test_compare_shows_two_runs_side_by_side(
    fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.configure(ttft_ms=10)
    bench(fake, tmp_path / "a", "--requests", "6", "--max-tokens", "3")
    fake.configure(ttft_ms=60)
    bench(fake, tmp_path / "b", "--requests", "6", "--max-tokens", "3")
    capsys.readouterr()
    a, b = tmp_path / "a" / "bench.json", tmp_path / "b" / "bench.json"
    assert main(["bench", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    ttft = next(line for line in out.splitlines() if "TTFT p50 ms" in line)
    assert ttft.startswith("concurrency 1")
    assert ttft.endswith("B worse")
    assert main(["bench", "compare", str(a), str(b), "--markdown"]) == 0
    assert "| concurrency 1 | TTFT p50 ms |" in capsys.readouterr().out


def test_synthetic_prompts_hit_the_asked_length(fake: FakeUpstream, tmp_path: Path) -> None:
    data = bench(fake, tmp_path, "--input-len", "120", "--requests", "5", "--max-tokens", "2")
    workload = data["config"]["workload"]
    assert workload["calibration"]["measured"]
    summary = data["levels"][0]["summary"]
    assert summary["total_input_tokens"] / summary["completed"] == pytest.approx(120, abs=2)
    zh = bench(
        fake, tmp_path / "zh", "--input-len", "50", "--lang", "zh", "--requests", "2",
        "--max-tokens", "2",
    )  # fmt: skip
    assert zh["levels"][0]["summary"]["completed"] == 2


def test_image_prompts_and_jsonl_conversations(fake: FakeUpstream, tmp_path: Path) -> None:
    bench(fake, tmp_path / "img", "--image-size", "64x48", "--requests", "2", "--max-tokens", "2")
    content = fake.stats()["last_request"]["messages"][-1]["content"]
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    assert len(images) == 1
    assert images[0].startswith("data:image/jpeg;base64,")
    dataset = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "first one", "max_tokens": 3},
        {"conversations": [{"from": "human", "value": "second one"}]},
    ]
    dataset.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = bench(fake, tmp_path / "jsonl", "--dataset", str(dataset), "--requests", "4")
    assert data["config"]["workload"] == {"kind": "jsonl", "file": str(dataset), "prompts": 2}
    assert data["levels"][0]["summary"]["completed"] == 4


def test_rate_and_duration(fake: FakeUpstream, tmp_path: Path) -> None:
    data = bench(
        fake, tmp_path, "--duration", "1.5s", "--rate", "20", "--poisson", "--concurrency",
        "8", "--max-tokens", "2", "--interval", "0.5s", "--warmup", "3",
    )  # fmt: skip
    level = data["levels"][0]
    assert level["warmup"] == 3
    assert 10 <= level["summary"]["requests"] <= 70
    assert len(level["timeseries"]) in (3, 4)  # the last answers end just after 1.5 s
    assert level["load"]["poisson"]


def test_https_with_a_self_signed_certificate_needs_insecure(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    upstream = {"name": "f", "base_url": fake.base_url, "models": ["fake-model"]}
    config = {"engine": {"enabled": False, "embeddings": False, "ocr": False},
              "upstreams": [upstream]}  # fmt: skip
    with run_tls_gateway(tmp_path / "home", config) as (url, _cert):
        args = ("--requests", "3", "--no-preflight")
        refused = bench(fake, tmp_path / "refused", *args, url=url + "/v1", code=1)
        assert refused["levels"][0]["summary"]["errors"] == {"connect_error": 3}
        done = bench(fake, tmp_path / "ok", *args, "--insecure", url=url + "/v1")
    assert done["levels"][0]["summary"]["completed"] == 3


def test_an_unreachable_server_is_all_connect_errors(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["bench", "--url", url, "--model", "m", "--requests", "3", "--no-preflight"]
    assert main([*args, "--quiet", "--no-charts", "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["levels"][0]["summary"]["errors"] == {"connect_error": 3}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENCLAVE, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "a,b"], "bad concurrency"),
        (["--duration", "soon"], "bad --duration"),
        (["--goodput", "fast:1"], "bad SLO"),
        (["--dataset", "/nonexistent.jsonl"], "cannot read /nonexistent.jsonl"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = run_cli("bench", "--url", "http://127.0.0.1:9", "--model", "m", *args)
    assert result.returncode == 1
    assert result.stderr.startswith(f"enclave: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_refused_first_request_is_one_line(fake: FakeUpstream) -> None:
    result = run_cli("bench", "--url", fake.root, "--model", "nope", "--quiet")
    assert result.returncode == 1
    assert "first request" in result.stderr
    assert "http_404" in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "x.json"
    other.write_text("{}")
    result = run_cli("bench", "compare", str(other), str(other))
    assert result.returncode == 1
    assert result.stderr == f"enclave: {other} is not an enclave bench result (bench.json)\n"
    assert io.StringIO(result.stdout).read() == ""
