"""``engine.speculative``: the values it takes, the child's arguments it becomes, and the
acceptance counts a call record takes from llama.cpp's ``timings``."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.config import SPECULATIVE_NGRAM_TYPES, EngineSettings, load_settings
from enclave.engine.speculative import child_args, draft_model, uses_draft_model
from enclave.errors import ConfigError
from enclave.router import CallRecord


@pytest.mark.parametrize("value", ["off", *SPECULATIVE_NGRAM_TYPES, "qwen2.5-coder-0.5b-instruct"])
def test_off_the_ngram_types_and_model_names_are_settings(value: str) -> None:
    assert load_settings(None, **{"engine.speculative": value}).engine.speculative == value


@pytest.mark.parametrize("value", ["ngram-fast", "ngram", "", ".hidden", "models/draft"])
def test_an_unknown_value_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=r"engine\.speculative") as caught:
        load_settings(None, **{"engine.speculative": value})
    assert "ngram-simple" in str(caught.value) or "draft model" in str(caught.value)


def test_the_setting_becomes_the_childs_arguments() -> None:
    assert child_args(EngineSettings(speculative="off"), None) == []
    mod = EngineSettings(speculative="ngram-mod", speculative_draft_max=24)
    assert child_args(mod, None) == [
        "--speculative", "ngram-mod", "--draft-max", "24", "--ngram-match", "0",
    ]  # fmt: skip
    named = EngineSettings(speculative="qwen2.5-coder-0.5b-instruct")
    assert uses_draft_model(named)
    assert child_args(named, Path("/m/d.gguf")) == [
        "--speculative", "draft", "--draft-max", "0", "--draft-model", "/m/d.gguf",
    ]  # fmt: skip


def test_a_draft_model_missing_from_the_store_names_the_setting(tmp_path: Path) -> None:
    settings = load_settings(None, home=tmp_path, **{"engine.speculative": "no-such-draft"})
    with pytest.raises(ConfigError, match=r"engine\.speculative: no draft model 'no-such-draft'"):
        draft_model(settings)
    assert draft_model(load_settings(None, home=tmp_path)) is None  # an n-gram type


def test_a_call_record_takes_the_draft_counts_from_timings() -> None:
    record = CallRecord()
    record.timings({"predicted_n": 80})  # no drafting: nothing noted
    record.timings(None)
    assert (record.draft_tokens, record.draft_accepted) == (None, None)
    record.timings({"predicted_n": 80, "draft_n": 66, "draft_n_accepted": 55})
    assert (record.draft_tokens, record.draft_accepted) == (66, 55)
