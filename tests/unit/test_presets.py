"""``enclave vllm-command``: vLLM launch presets, their shell command and enclave's entry."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from enclave.cli.main import main
from enclave.config import UpstreamSettings
from enclave.deploy import presets
from enclave.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["vllm-command", *args])
    out, err = capsys.readouterr()
    return code, out, err


def flag_values(launch: presets.Launch) -> dict[str, str | None]:
    return {flag.name: flag.value for flag in launch.flags}


def test_qwen3_vl_flags() -> None:
    launch = presets.build(presets.get_preset("qwen3-vl-32b"))
    flags = flag_values(launch)
    assert launch.model_path == "/models/Qwen3-VL-32B-Instruct"
    assert flags["--dtype"] == "bfloat16"
    assert flags["--kv-cache-dtype"] == "fp8"
    assert flags["--max-model-len"] == "16384"
    assert flags["--gpu-memory-utilization"] == "0.95"
    assert json.loads(flags["--limit-mm-per-prompt"] or "") == {"image": 8}
    assert flags["--served-model-name"] == "qwen3-vl-32b"
    assert flags["--tool-call-parser"] == "hermes"
    assert flags["--enable-auto-tool-choice"] is None
    assert flags["--enable-prefix-caching"] is None
    assert flags["--tensor-parallel-size"] == "2"
    assert "--quantization" not in flags
    assert "--reasoning-parser" not in flags  # the Instruct edition does not think
    assert {s.name: s.value for s in launch.env} == {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    assert all(flag.why for flag in launch.flags)


def test_awq_uses_marlin_and_float16_and_no_images() -> None:
    launch = presets.build(presets.get_preset("qwen2.5-7b-awq"))
    flags = flag_values(launch)
    assert flags["--quantization"] == "awq_marlin"
    assert flags["--dtype"] == "float16"
    assert "--limit-mm-per-prompt" not in flags
    assert launch.upstream["vision"] is False
    why = {flag.name: flag.why for flag in launch.flags}
    assert "Marlin" in why["--quantization"]
    assert "`awq`" in why["--quantization"]
    assert "bfloat16" in why["--dtype"]


def test_operator_choices_reach_command_and_upstream() -> None:
    launch = presets.build(
        presets.get_preset("qwen3-vl-32b"),
        model_path="/data/qwen vl",
        port=9001,
        served_model_name="vision",
        tp=4,
        max_num_seqs=12,
        api_key=False,
    )
    flags = flag_values(launch)
    assert launch.model_path == "/data/qwen vl"
    assert flags["--port"] == "9001"
    assert flags["--tensor-parallel-size"] == "4"
    assert flags["--max-num-seqs"] == "12"
    assert "--api-key" not in flags
    assert launch.upstream == {
        "name": "gpu1",
        "base_url": "http://HOST:9001/v1",
        "models": ["vision"],
        "vision": True,
        "max_concurrency": 12,
        "context_length": 16384,
    }


def test_unknown_preset_lists_known_ones() -> None:
    known = re.escape("known presets: qwen2.5-7b-awq, qwen3-vl-32b")
    with pytest.raises(ConfigError, match=known):
        presets.get_preset("llama")


def test_upstream_yaml_is_enclave_settings() -> None:
    launch = presets.build(presets.get_preset("qwen3-vl-32b"))
    text = presets.upstream_yaml(launch.upstream)
    assert text.splitlines()[:2] == ["upstreams:", "  - name: gpu1"]
    assert "    models: [qwen3-vl-32b]" in text.splitlines()
    parsed = yaml.safe_load(text)
    assert parsed == {"upstreams": [launch.upstream]}
    member = UpstreamSettings.model_validate(parsed["upstreams"][0])
    assert member.vision is True
    assert member.context_length == 16384
    assert member.api_key_env == "VLLM_API_KEY"


@pytest.mark.parametrize("name", ["qwen 7b", "true", "a: b", "'quoted'", "漢字", "123"])
def test_upstream_yaml_quotes_odd_names(name: str) -> None:
    entry = presets.upstream_entry(presets.get_preset("qwen2.5-7b-awq"), name, 8000, 4)
    assert yaml.safe_load(presets.upstream_yaml(entry))["upstreams"][0]["models"] == [name]


def stub_vllm(directory: Path) -> None:
    """A ``vllm`` on PATH that prints its arguments and the offline variables as JSON."""
    script = directory / "vllm"
    names = ["HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"]
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"env = {{n: os.environ.get(n) for n in {names!r}}}\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': env}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def run_shell(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    stub_vllm(tmp_path)
    bash = shutil.which("bash")
    assert bash is not None
    full_env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(
        [bash, "-c", command], env=full_env, capture_output=True, text=True, check=False
    )


def test_shell_command_runs_as_printed(tmp_path: Path) -> None:
    launch = presets.build(
        presets.get_preset("qwen3-vl-32b"), model_path="/models/my dir", served_model_name="vl"
    )
    done = run_shell(presets.shell_command(launch), tmp_path, VLLM_API_KEY="s3cret")
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    assert seen["env"] == {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    argv = seen["argv"]
    assert argv[:2] == ["serve", "/models/my dir"]
    assert argv[argv.index("--limit-mm-per-prompt") + 1] == '{"image": 8}'
    assert argv[argv.index("--api-key") + 1] == "s3cret"
    assert argv[argv.index("--served-model-name") + 1] == "vl"
    assert argv[-2:] == ["--tool-call-parser", "hermes"]


def test_shell_command_stops_without_the_key(tmp_path: Path) -> None:
    launch = presets.build(presets.get_preset("qwen2.5-7b-awq"))
    done = run_shell(presets.shell_command(launch), tmp_path)
    assert done.returncode != 0
    assert "VLLM_API_KEY" in done.stderr
    assert done.stdout == ""


def test_cli_default_prints_command_explanations_and_yaml(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "--preset", "qwen3-vl-32b")
    assert (code, err) == (0, "")
    assert "flags checked against vLLM 0.33.0" in out
    assert "vllm serve /models/Qwen3-VL-32B-Instruct \\\n" in out
    assert "  --kv-cache-dtype fp8 \\\n" in out
    assert "  --limit-mm-per-prompt '{\"image\": 8}' \\\n" in out
    assert "Each setting:" in out
    for flag in presets.build(presets.get_preset("qwen3-vl-32b")).flags:
        assert f"  {flag.label()} — " in out
    assert "  HF_HUB_OFFLINE=1 — " in out
    yaml_part = out[out.index("upstreams:") :]
    assert yaml.safe_load(yaml_part)["upstreams"][0]["models"] == ["qwen3-vl-32b"]


def test_cli_no_explain_is_command_and_yaml_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--preset", "qwen2.5-7b-awq", "--no-explain", "--port", "8100")
    assert code == 0
    assert "Each setting:" not in out
    assert " — " not in out
    assert "  --port 8100 \\\n" in out
    assert "base_url: http://HOST:8100/v1" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--preset", "qwen3-vl-32b", "--json", "--tp", "1", "--model-path", "/w/vl"
    )
    assert code == 0
    data = json.loads(out)
    assert data["vllm_version"] == presets.VLLM_VERSION
    assert data["model_path"] == "/w/vl"
    assert data["env"]["HF_HUB_OFFLINE"] == "1"
    values = {f["flag"]: f["value"] for f in data["flags"]}
    assert values["--tensor-parallel-size"] == "1"
    assert values["--kv-cache-dtype"] == "fp8"
    assert all(f["why"] for f in data["flags"])
    assert data["upstream"]["vision"] is True
    assert yaml.safe_load(data["upstream_yaml"]) == {"upstreams": [data["upstream"]]}
    assert data["command"].startswith("HF_HUB_OFFLINE=1 \\\n")


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "WEIGHTS", "GPUS", "IMAGES"]
    assert [line.split()[0] for line in lines[1:]] == ["qwen2.5-7b-awq", "qwen3-vl-32b"]


def test_cli_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--preset", "mistral")
    assert code == 1
    assert out == ""
    assert err == "enclave: unknown preset 'mistral'; known presets: qwen2.5-7b-awq, qwen3-vl-32b\n"


def test_cli_needs_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 1
    assert "give --preset NAME or --list" in err


def test_cli_rejects_zero_gpus(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["vllm-command", "--preset", "qwen3-vl-32b", "--tp", "0"])
    assert exc.value.code == 2
    assert "must be 1 or more" in capsys.readouterr().err
