"""``enclave verify`` against the real fake upstream: passes when the gates are met, fails
(exit 1, the gate marked ❌) when one is missed. Small request counts keep it quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from enclave.bench.verify import Thresholds
from enclave.cli.main import main
from tests.fakes.procs import FakeUpstream

pytestmark = pytest.mark.fake_upstream(models=("fake-model", "other"))
ENCLAVE = str(Path(sys.executable).parent / "enclave")
QUICK = {
    "max_tokens": 8,
    "smoke": {"calls": 4},
    "single_user": {"requests": 5},
    "throughput": {"concurrency": 4, "requests": 12},
}


@pytest.fixture(autouse=True)
def fresh(fake: FakeUpstream) -> None:
    fake.restore()


def verify(
    fake: FakeUpstream, tmp_path: Path, *args: str, **overrides: Any
) -> tuple[int, dict[str, Any]]:
    thresholds = tmp_path / "gates.yaml"
    thresholds.write_text(yaml.safe_dump({**QUICK, **overrides}))
    report, verdict = tmp_path / "verify.md", tmp_path / "verify.json"
    argv = ["verify", "--url", fake.root, "--thresholds", str(thresholds)]
    argv += ["--report", str(report), "--json", str(verdict), *args]
    code = main(argv)
    return code, json.loads(verdict.read_text())


def gates(data: dict[str, Any]) -> dict[str, bool | None]:
    return {gate["name"]: gate["passed"] for gate in data["gates"]}


def test_a_healthy_endpoint_passes(
    fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.configure(ttft_ms=5, itl_ms=1)
    code, data = verify(fake, tmp_path, "--model", "fake-model")
    assert code == 0
    assert data["passed"]
    result = gates(data)
    assert result.pop("stability run") is None  # optional, not asked for
    assert all(result.values()), result
    assert set(result) >= {
        "/health is 200", "/v1/models lists the model", "chat works", "streaming works",
        "4 calls succeed", "single user P50", "single user P95", "4 concurrent users",
        "success over the run", "empty input", "over-long input (9192 words)",
    }  # fmt: skip
    out = capsys.readouterr().out
    assert "✅ " in out
    assert "❌" not in out
    assert "PASSED" in out
    report = (tmp_path / "verify.md").read_text()
    assert "| ✅ | single user P50 | ≤ 2 s |" in report


def test_too_slow_fails_the_p50_gate(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(ttft_ms=150)
    code, data = verify(fake, tmp_path, single_user={"requests": 3, "p50_s": 0.1, "p95_s": 5})
    assert code == 1
    result = gates(data)
    assert result["single user P50"] is False
    assert result["single user P95"] is True
    assert result["chat works"] is True
    assert data["model"] == "fake-model"  # the first one listed
    assert "| ❌ | single user P50 | ≤ 0.1 s |" in (tmp_path / "verify.md").read_text()


def test_accepting_empty_input_fails(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(lenient=True)
    code, data = verify(fake, tmp_path)
    assert code == 1
    result = gates(data)
    assert result["empty input"] is False
    assert result["over-long input (9192 words)"] is False
    failed = {gate["name"]: gate["measured"] for gate in data["gates"] if gate["passed"] is False}
    assert failed == {"empty input": "HTTP 200", "over-long input (9192 words)": "HTTP 200"}


def test_errors_fail_the_success_gates_and_a_missing_model_fails(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.configure(script="ok,ok,ok,ok,ok,ok,ok,ok,ok,status:503")
    code, data = verify(fake, tmp_path, "--model", "fake-model")
    assert code == 1
    result = gates(data)
    assert result["success over the run"] is False  # 90 % < 99 %
    assert result["/health is 200"] is True
    fake.restore()
    code, data = verify(fake, tmp_path, "--model", "missing")
    assert code == 1
    assert gates(data)["/v1/models lists the model"] is False
    assert gates(data)["chat works"] is False


def test_a_short_stability_run(fake: FakeUpstream, tmp_path: Path) -> None:
    soak = {"concurrency": 2, "interval": "0.5s", "max_window_p95_s": 2}
    code, data = verify(fake, tmp_path, "--soak", "1.5s", soak=soak)
    assert code == 0
    result = gates(data)
    assert result["stability 1.5 s at 2"] is True
    assert result["stability: worst window P95"] is True
    assert len(data["soak_windows"]) in (3, 4)  # the last answers end just after 1.5 s
    assert "## Stability run, per window" in (tmp_path / "verify.md").read_text()


def test_thresholds_file_and_defaults(tmp_path: Path) -> None:
    printed = subprocess.run(
        [ENCLAVE, "verify", "--print-thresholds"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0
    assert Thresholds.model_validate(yaml.safe_load(printed.stdout)) == Thresholds()
    bad = tmp_path / "bad.yaml"
    bad.write_text("throughput: {min_rps: lots}\n")
    result = subprocess.run(
        [ENCLAVE, "verify", "--url", "http://127.0.0.1:9", "--thresholds", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"enclave: {bad}: throughput.min_rps:")
    assert "Traceback" not in result.stderr
