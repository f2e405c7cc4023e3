"""Issue 13 §1: the shared embedder's turns. One caller's big batch must not hold the
embedder until it is done, and texts of a caller who left are never encoded.

FairQueue is the real scheduler; the encoder it drives here is a stand-in that records
what it is given (the bundled model's own runs are in tests/live/test_harden_embeddings)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from enclave.config import LimitsSettings
from enclave.engine.embed_queue import CALLER, FairQueue
from enclave.errors import InvalidRequest
from enclave.gateway.embed_limits import check_embeddings
from enclave.protocol.embeddings import EmbeddingRequest

WAIT = 30.0


class Recorder:
    """Encodes each text as a row holding its length; the first batch waits for ``go``."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.go = threading.Event()
        self.started = threading.Event()

    def __call__(self, texts: list[str], is_query: bool) -> tuple[Any, int]:
        self.started.set()
        assert self.go.wait(WAIT)
        self.seen.append(list(texts))
        return np.array([[float(len(t))] for t in texts], dtype=np.float32), len(texts)


def test_a_small_request_goes_before_the_rest_of_a_big_batch() -> None:
    run = Recorder()
    queue = FairQueue(run, batch=2)
    big = queue.submit("user:a", [f"a{i}" for i in range(8)], True)
    assert run.started.wait(WAIT)  # a's first batch holds the worker
    small = queue.submit("user:b", ["b0"], True)
    run.go.set()

    assert small.result(WAIT)[1] == 1
    vectors, tokens = big.result(WAIT)
    assert run.seen == [["a0", "a1"], ["b0"], ["a2", "a3"], ["a4", "a5"], ["a6", "a7"]]
    assert tokens == 8
    assert vectors.shape == (8, 1)


def test_callers_take_turns_and_one_callers_requests_keep_their_order() -> None:
    run = Recorder()
    queue = FairQueue(run, batch=1)
    first = queue.submit("key:a", ["a0", "a1"], True)
    assert run.started.wait(WAIT)
    second = queue.submit("key:a", ["a2"], True)
    other = queue.submit("key:b", ["b0", "b1"], True)
    run.go.set()
    for future in (first, second, other):
        future.result(WAIT)

    assert run.seen == [["a0"], ["b0"], ["a1"], ["b1"], ["a2"]]


def test_a_cancelled_request_is_not_encoded_further() -> None:
    run = Recorder()
    queue = FairQueue(run, batch=2)

    async def leave_early() -> None:
        task = asyncio.ensure_future(queue.encode([f"t{i}" for i in range(10)], True))
        await asyncio.to_thread(run.started.wait, WAIT)
        task.cancel()  # what the gateway does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave_early())
    run.go.set()
    after = queue.submit("other", ["x"], True)
    after.result(WAIT)

    assert run.seen == [["t0", "t1"], ["x"]]
    assert queue.texts_encoded == 3
    assert queue.pending() == 0


def test_the_gateway_names_the_caller() -> None:
    run = Recorder()
    run.go.set()
    queue = FairQueue(run, batch=4)

    async def as_user() -> None:
        CALLER.set("user:alice")
        await queue.encode(["x"], True)

    asyncio.run(as_user())
    assert queue.texts_encoded == 1


# --- the request bounds, before any model is asked ------------------------------------


def refused(body: dict[str, Any], limits: LimitsSettings, count: Any = None) -> str:
    request = EmbeddingRequest.model_validate({"model": "m", **body})
    with pytest.raises(InvalidRequest) as caught:
        asyncio.run(check_embeddings(request, limits, count))
    assert caught.value.status == 400
    return caught.value.message


def never(text: str) -> int:
    raise AssertionError("a text over the character ceiling must not be tokenized")


def test_a_megabyte_string_is_refused_without_tokenizing_it() -> None:
    message = refused({"input": "x" * 2**20}, LimitsSettings(), never)
    assert "limits.max_embedding_input_tokens" in message


def test_too_many_inputs_names_the_limit() -> None:
    message = refused({"input": ["a"] * 2049}, LimitsSettings(), never)
    assert "limits.max_embedding_inputs" in message


def test_token_arrays_are_bounded_too() -> None:
    limits = LimitsSettings(max_embedding_input_tokens=10, max_embedding_request_tokens=25)
    assert "limits.max_embedding_input_tokens" in refused({"input": [1] * 11}, limits)
    many = {"input": [[1] * 10, [2] * 10, [3] * 10]}
    assert "limits.max_embedding_request_tokens" in refused(many, limits)


def test_the_exact_count_decides_under_the_character_ceiling() -> None:
    limits = LimitsSettings(max_embedding_input_tokens=100, max_embedding_request_tokens=150)
    words = len  # one token a character, for this count
    assert "limits.max_embedding_input_tokens" in refused({"input": "y" * 101}, limits, words)
    many = {"input": ["y" * 60, "y" * 60, "y" * 60]}
    assert "limits.max_embedding_request_tokens" in refused(many, limits, words)
    fine = EmbeddingRequest.model_validate({"model": "m", "input": ["y" * 60, "y" * 60]})
    asyncio.run(check_embeddings(fine, limits, words))
