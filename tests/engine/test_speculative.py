"""Speculative decoding on the embedded engine (``engine.speculative``), tiny model.

At temperature 0 a draft only decides how many tokens one step checks, so the answers
with n-gram drafting are the answers without it; the drafted and accepted tokens reach
the gateway's /metrics from llama.cpp's ``timings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from enclave.engine.child import build_params, parse_args
from tests.engine.conftest import prepare
from tests.gateway import run_gateway

TINY = "smollm2-135m-instruct"
CONFIG = """\
engine:
  model: qwen2.5-coder-1.5b-instruct
  threads: 2
  ctx_size: 8192
  parallel: 2
  port: 8000
  embeddings: true
  ocr: true
limits:
  max_images: 8
  max_body_bytes: 64MiB
"""
# An edit the tiny model gets mostly right: most drafts are accepted, some are not.
EDIT = f"Repeat this config exactly, with port 8000 changed to 9000.\n\n{CONFIG}"
FRESH = "Write one sentence about the sea."
MAX_TOKENS = 80
DRAFTING = ("ngram-mod", "ngram-simple")  # the default, and the type the issue tried first


@dataclass
class Run:
    edit_streamed: str
    edit_whole: str
    fresh: str
    metrics: str


def _answers(home: Path, speculative: str) -> Run:
    engine = {"model": TINY, "ctx_size": 1024, "parallel": 1, "threads": 1, "embeddings": False}
    config = {"engine": engine | {"ocr": False, "speculative": speculative}}
    with run_gateway(home, config, timeout=120) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)

        def ask(content: str, *, stream: bool) -> str:
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
            if not stream:
                done = client.chat.completions.create(
                    model=TINY, messages=messages, temperature=0, max_tokens=MAX_TOKENS
                )
                return done.choices[0].message.content or ""
            chunks = client.chat.completions.create(
                model=TINY, messages=messages, temperature=0, max_tokens=MAX_TOKENS, stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        run = Run(ask(EDIT, stream=True), ask(EDIT, stream=False), ask(FRESH, stream=False), "")
        run.metrics = httpx.get(gateway.url + "/metrics", trust_env=False, timeout=10).text
        return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    home = tmp_path_factory.mktemp("speculative")
    prepare(home, TINY)
    return {name: _answers(home, name) for name in ("off", *DRAFTING)}


def samples(metrics: str, name: str) -> dict[str, float]:
    """``suffix -> value`` of one metric family's samples (labels dropped)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == name:
            for sample in family.samples:
                key = sample.name.removeprefix(name) + sample.labels.get("le", "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


@pytest.mark.parametrize("kind", DRAFTING)
def test_at_temperature_0_drafting_does_not_change_the_answers(
    runs: dict[str, Run], kind: str
) -> None:
    plain, drafted = runs["off"], runs[kind]
    assert plain.edit_streamed.strip()
    assert drafted.edit_streamed == plain.edit_streamed
    assert drafted.edit_whole == plain.edit_whole
    assert drafted.fresh == plain.fresh


@pytest.mark.parametrize("kind", DRAFTING)
def test_the_drafted_and_accepted_tokens_reach_the_metrics(runs: dict[str, Run], kind: str) -> None:
    drafted = samples(runs[kind].metrics, "enclave_speculative_draft_tokens")
    accepted = samples(runs[kind].metrics, "enclave_speculative_accepted_tokens")
    ratio = samples(runs[kind].metrics, "enclave_speculative_acceptance_ratio")
    assert drafted["_total"] > 0
    assert 0 < accepted["_total"] <= drafted["_total"]
    # both edits drafted (streamed: from the final chunk; whole: from the answer)
    assert ratio["_count"] >= 2
    assert 0 < ratio["_sum"] <= ratio["_count"]
    assert samples(runs["off"].metrics, "enclave_speculative_draft_tokens") == {}


@pytest.mark.parametrize(
    ("setting", "member", "lengths"),
    [("ngram-simple", "NGRAM_SIMPLE", ("ngram_simple", "size_m", "size_n")),
     ("ngram-map-k", "NGRAM_MAP_K", ("ngram_map_k", "size_m", "size_n")),
     ("ngram-map-k4v", "NGRAM_MAP_K4V", ("ngram_map_k4v", "size_m", "size_n")),
     ("ngram-mod", "NGRAM_MOD", ("ngram_mod", "n_max", "n_match")),
     ("ngram-cache", "NGRAM_CACHE", None)],
)  # fmt: skip
def test_the_child_sets_llama_cpps_speculative_type(
    setting: str, member: str, lengths: tuple[str, str, str] | None
) -> None:
    """The draft and match lengths land on the type's own parameters: llama.cpp's server
    caps only a draft model's drafts by ``draft.n_max``."""
    base = ["--model", "m.gguf", "--port", "1", "--parent", "1", "--speculative", setting]
    params = build_params(parse_args([*base, "--draft-max", "32", "--ngram-match", "6"]))
    assert [t.name for t in params.speculative.types] == [f"COMMON_SPECULATIVE_TYPE_{member}"]
    assert params.speculative.draft.mparams.path == ""
    if lengths is not None:
        group, draft, match = lengths
        values = getattr(params.speculative, group)
        assert (getattr(values, draft), getattr(values, match)) == (32, 6)
        defaults = getattr(build_params(parse_args(base)).speculative, group)
        assert (getattr(defaults, draft), getattr(defaults, match)) != (32, 6)


def test_the_child_loads_a_draft_model_or_drafts_nothing() -> None:
    base = ["--model", "m.gguf", "--port", "1", "--parent", "1", "--threads", "3"]
    draft = ["--speculative", "draft", "--draft-model", "d.gguf", "--draft-max", "5"]
    params = build_params(parse_args([*base, *draft]))
    assert [t.name for t in params.speculative.types] == ["COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE"]
    assert params.speculative.draft.n_max == 5
    assert params.speculative.draft.mparams.path == "d.gguf"
    assert params.speculative.draft.cpuparams.n_threads == 3
    off = build_params(parse_args(base))
    assert [t.name for t in off.speculative.types] == ["COMMON_SPECULATIVE_TYPE_NONE"]
