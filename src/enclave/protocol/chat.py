"""Chat completions: requests, responses and stream chunks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from enclave.protocol._base import Open

# OpenAI's own bounds: at most 128 choices, at most 4 stop sequences.
MAX_N = 128
MAX_STOP = 4


def few_stops(value: str | list[str] | None) -> str | list[str] | None:
    """``stop`` as OpenAI bounds it (chat and legacy completions alike)."""
    if isinstance(value, list) and len(value) > MAX_STOP:
        raise ValueError(f"at most {MAX_STOP} stop sequences, as OpenAI allows")
    return value


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageURL(Open):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Open):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(Open):
    """input_audio, file, ... : passed through, not interpreted."""

    type: str

    @field_validator("type")
    @classmethod
    def _not_ours(cls, value: str) -> str:
        if value in {"text", "image_url"}:
            raise ValueError(f"malformed '{value}' content part")
        return value


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(union_mode="left_to_right")]


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def images(self) -> list[ImagePart]:
        if isinstance(self.content, list):
            return [part for part in self.content if isinstance(part, ImagePart)]
        return []

    def text(self) -> str:
        """The text of the message, parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            return ""
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionDefinition(Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Open):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class StreamOptions(Open):
    include_usage: bool | None = None


class ResponseFormat(Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stop: str | list[str] | None = Field(None, json_schema_extra={"maxItems": MAX_STOP})
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        return few_stops(value)

    @model_validator(mode="after")
    def _usage_needs_stream(self) -> ChatCompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def output_limit(self) -> int | None:
        """The requested completion length, whichever field carried it."""
        return self.max_completion_tokens or self.max_tokens

    def images(self) -> list[ImagePart]:
        return [image for message in self.messages for image in message.images()]

    def wants_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def wire(self) -> dict[str, Any]:
        """The request as it goes upstream: what the client sent, extras included."""
        return self.model_dump(exclude_unset=True)
