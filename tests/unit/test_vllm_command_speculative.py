"""``enclave vllm-command --ngram-speculation``: vLLM's n-gram speculative config, explained,
off unless asked for."""

from __future__ import annotations

import json

import pytest

from enclave.cli.main import main
from enclave.deploy import presets

pytestmark = pytest.mark.usefixtures("clean_env")


def test_ngram_speculation_is_off_by_default() -> None:
    for name in presets.PRESETS:
        flags = [flag.name for flag in presets.build(presets.get_preset(name)).flags]
        assert "--speculative-config" not in flags


def test_the_flag_adds_vllms_ngram_config_explained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--preset", "qwen2.5-7b-awq", "--ngram-speculation"]) == 0
    out = capsys.readouterr().out
    config = '{"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4}'
    command, explained = out.split("Each setting:")
    assert f"  --speculative-config '{config}'\n" in command
    assert f"  --speculative-config '{config}' —" in explained
    assert "n-gram (prompt lookup) speculative decoding" in explained
    assert "engine.speculative" in explained


def test_the_json_output_carries_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--preset", "qwen3-vl-32b", "--ngram-speculation", "--json"]) == 0
    flags = {f["flag"]: f["value"] for f in json.loads(capsys.readouterr().out)["flags"]}
    assert json.loads(flags["--speculative-config"]) == {
        "method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4,
    }  # fmt: skip
