"""The OpenAI wire schema (pydantic), and nothing else: no I/O here.

Unknown fields are kept (``extra="allow"``) and passed on to the upstream untouched,
because servers such as vLLM accept many extras (``top_k``, ``guided_json``...).
"""

from enclave.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    ImagePart,
    ImageURL,
    StreamOptions,
    TextPart,
)
from enclave.protocol.completions import CompletionRequest
from enclave.protocol.embeddings import EmbeddingRequest
from enclave.protocol.errors import ErrorBody, ErrorEnvelope
from enclave.protocol.models import ModelCard, ModelList

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "ErrorBody",
    "ErrorEnvelope",
    "ImagePart",
    "ImageURL",
    "ModelCard",
    "ModelList",
    "StreamOptions",
    "TextPart",
]
