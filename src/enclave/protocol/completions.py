"""``POST /v1/completions``: the legacy text completion (a prompt in, text out), as vLLM
and llama.cpp's server serve it. Fields beyond these (``top_k``, ``guided_json``...) pass
through like chat's."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from enclave.protocol._base import Open
from enclave.protocol.chat import MAX_N, MAX_STOP, StreamOptions, few_stops

# One prompt: text, or the token ids of one text.
OnePrompt = str | list[int]
Prompts = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(Open):
    model: str = Field(min_length=1)
    prompt: Prompts
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=0)  # 0 with echo: the prompt's logprobs only
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    best_of: int | None = Field(None, ge=1, le=MAX_N)
    stop: str | list[str] | None = Field(None, json_schema_extra={"maxItems": MAX_STOP})
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = Field(None, ge=0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Prompts) -> Prompts:
        if isinstance(value, list) and (not value or any(item == [] for item in value)):
            raise ValueError("prompt must not be an empty list, nor hold an empty token list")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        return few_stops(value)

    @model_validator(mode="after")
    def _usage_needs_stream(self) -> CompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def prompts(self) -> list[OnePrompt]:
        """Each prompt: a text or one text's token ids (a flat list of ints is one prompt)."""
        value = self.prompt
        if isinstance(value, str):
            return [value]
        if all(isinstance(item, int) for item in value):
            return [[int(item) for item in value if isinstance(item, int)]]
        return [item for item in value if isinstance(item, str | list)]

    def output_limit(self) -> int | None:
        return self.max_tokens

    def wants_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)
