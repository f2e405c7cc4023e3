"""The bounds of one ``/v1/embeddings`` request, as OpenAI has them, checked before any
model (local or upstream) works on it: inputs per request (``limits.max_embedding_inputs``),
tokens per input (``limits.max_embedding_input_tokens``) and tokens in all
(``limits.max_embedding_request_tokens``). A refusal is a 400 naming the setting.

Cheapest first. Token arrays are counted by their length. Texts are first held to a
character ceiling derived from the token bounds (text runs about 4 characters a token,
hardly ever over :data:`~enclave.engine.embedder.CHARS_PER_TOKEN`), so a 1 MB string is
refused without being tokenized; then, where the gateway has the bundled embedder, its
tokenizer counts them exactly (XLM-R's, the one multilingual-e5 and bge-m3 share; an
estimate for other upstream models), in a worker thread that stops when the client leaves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from enclave.config import LimitsSettings
from enclave.engine.embed_queue import CALLER
from enclave.engine.embedder import CHARS_PER_TOKEN
from enclave.errors import ClientGone, InvalidRequest
from enclave.gateway.gatekeeper import Principal
from enclave.protocol.embeddings import EmbeddingRequest

Counter = Callable[[str], int]

INPUTS = "limits.max_embedding_inputs"
INPUT_TOKENS = "limits.max_embedding_input_tokens"
REQUEST_TOKENS = "limits.max_embedding_request_tokens"


async def check_embeddings(
    request: EmbeddingRequest, limits: LimitsSettings, count: Counter | None
) -> None:
    """Refuse ``request`` when it is over a bound; ``count`` gives a text's exact tokens."""
    items = _inputs(request)
    if len(items) > limits.max_embedding_inputs:
        raise InvalidRequest(
            f"{len(items)} inputs; {INPUTS} allows {limits.max_embedding_inputs} per request",
            param="input",
        )
    texts = [item for item in items if isinstance(item, str)]
    if len(texts) < len(items):  # token ids: their length is their count
        _check_sizes([len(item) for item in items], limits, "tokens", 1)
        return
    _check_sizes([len(text) for text in texts], limits, "characters", CHARS_PER_TOKEN)
    if count is not None:
        stop = threading.Event()
        try:
            sizes = await asyncio.to_thread(_count, texts, count, limits, stop)
        finally:
            stop.set()  # a client gone: the thread stops at the next text
        _check_sizes(sizes, limits, "tokens", 1)


def take_turns_as(principal: Principal | None) -> None:
    """Name the caller for the embedder's fair turns: its user, else its API key. Without
    authentication every request takes its own turns."""
    if principal is not None and (principal.user or principal.key_prefix):
        CALLER.set(f"user:{principal.user}" if principal.user else f"key:{principal.key_prefix}")


def _inputs(request: EmbeddingRequest) -> Sequence[str | list[int]]:
    value = request.input
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, int) for item in value):
        return [[int(item) for item in value if isinstance(item, int)]]  # one token array
    return [item for item in value if isinstance(item, str | list)]


def _count(
    texts: list[str], count: Counter, limits: LimitsSettings, stop: threading.Event
) -> list[int]:
    """Each text's tokens, stopping early once the request is over its total."""
    sizes: list[int] = []
    for text in texts:
        if stop.is_set():
            raise ClientGone
        sizes.append(count(text))
        if sum(sizes) > limits.max_embedding_request_tokens:
            break
    return sizes


def _check_sizes(sizes: list[int], limits: LimitsSettings, unit: str, per_token: int) -> None:
    """Refuse when one size or their sum is over the token bounds times ``per_token``."""
    most, total = limits.max_embedding_input_tokens, limits.max_embedding_request_tokens
    how = "" if per_token == 1 else f" ({per_token} characters a token at most)"
    for index, size in enumerate(sizes):
        if size > most * per_token:
            raise InvalidRequest(
                f"input[{index}] has {size} {unit}, more than {INPUT_TOKENS} ({most} tokens) "
                f"allows{how}; split it or shorten it",
                param=f"input[{index}]" if len(sizes) > 1 else "input",
            )
    if sum(sizes) > total * per_token:
        raise InvalidRequest(
            f"the inputs have {sum(sizes)} {unit} in all, more than {REQUEST_TOKENS} "
            f"({total} tokens) allows{how}; send fewer per request",
            param="input",
        )
