"""``llm``: one chat completion with a prompt (or messages) rendered from the run.

The call goes through :meth:`RunContext.chat` (the gateway's router), so its tokens count
against the run's ``tasks.limits.max_tokens``. With ``json: true`` the model is asked for
a JSON object and the step fails unless it answers with one (output field ``json``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, model_validator

from enclave.errors import UpstreamError
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext

DEFAULT_MODEL = "default"  # the router resolves it to settings.default_model


class Message(BaseModel):
    model_config = {"extra": "forbid"}

    role: Literal["system", "user", "assistant"]
    content: str


class LlmOptions(Options):
    prompt: str | None = Field(None, description="the user message (or give messages)")
    messages: list[Message] | None = Field(None, description="the whole conversation")
    system: str | None = Field(None, description="a system message put first")
    model: str = Field(DEFAULT_MODEL, description="a model or alias as on /v1")
    max_tokens: int | None = Field(None, ge=1, description="completion tokens at most")
    temperature: float | None = Field(None, ge=0, le=2)
    json_output: bool = Field(
        False, alias="json", description="ask for a JSON object; the output's json field"
    )

    @model_validator(mode="after")
    def _one_input(self) -> LlmOptions:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


def request(opts: LlmOptions) -> dict[str, Any]:
    """The chat completion body of the step."""
    messages = [{"role": "system", "content": opts.system}] if opts.system else []
    if opts.messages is not None:
        messages += [m.model_dump() for m in opts.messages]
    else:
        messages.append({"role": "user", "content": opts.prompt or ""})
    body: dict[str, Any] = {"model": opts.model, "messages": messages}
    if opts.max_tokens is not None:
        body["max_tokens"] = opts.max_tokens
    if opts.temperature is not None:
        body["temperature"] = opts.temperature
    if opts.json_output:
        body["response_format"] = {"type": "json_object"}
    return body


def reply_text(response: dict[str, Any]) -> str:
    """The text of a chat completion's first choice."""
    try:
        content = response["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"the model's answer has no message: {exc!r}") from exc
    return content if isinstance(content, str) else ""


def parse_json(text: str) -> Any:
    """The JSON in ``text``: all of it, or the first fenced or braced block."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        return json.loads(cleaned)
    except ValueError:
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(cleaned[start : end + 1])
            except ValueError:
                pass
    raise UpstreamError(f"the model did not answer with JSON: {text[:200]!r}")


async def _run(ctx: RunContext, opts: LlmOptions) -> dict[str, Any]:
    response = await ctx.chat(request(opts))
    text = reply_text(response)
    output: dict[str, Any] = {"text": text, "usage": response.get("usage") or {}}
    if opts.json_output:
        output["json"] = parse_json(text)
    return output


LLM = StepKind(
    name="llm",
    description="one model call with a prompt template; its answer is the output's text",
    options=LlmOptions,
    run=_run,
)
