"""``POST /v1/completions`` on the embedded engine: llama.cpp's own server, the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.engine.conftest import prepare
from tests.gateway import Gateway, run_gateway

TINY = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("engine-completions")
    prepare(home, TINY)
    config = {"engine": {"model": TINY, "ctx_size": 1024, "parallel": 1, "embeddings": False,
                         "ocr": False, "served_model_names": ["tiny", TINY]}}  # fmt: skip
    with run_gateway(Path(home), config, timeout=120) as running:
        yield running


def test_the_engine_completes_a_prompt_streamed_and_not(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    prompt = "The capital of France is"
    done = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0)
    assert done.model == "tiny"
    assert done.choices[0].text.strip()
    assert done.usage is not None
    assert done.usage.completion_tokens == 6
    chunks = list(client.completions.create(model="tiny", prompt=prompt, max_tokens=6,
                                            temperature=0, stream=True))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == done.choices[0].text
    assert {c.model for c in chunks} == {"tiny"}
    assert all(c.usage is None for c in chunks)  # noted for the metrics, not sent unasked
