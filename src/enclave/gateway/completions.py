"""``POST /v1/completions``: the legacy text completion (a prompt in, text out) that vLLM
and llama.cpp's server answer, relayed through a chat model's pool like a chat call.

It shares the chat pipeline's parts (:mod:`enclave.gateway.chat`): the router's
balancing, queue, retries before the first byte and breaker; the SSE relay that renames
the model and notes the usage; the response headers; the content the audit keeps. What
it does not share is the model object: an assistant (a virtual model) is refused, since it
builds messages, and a plain model needs nothing prepared or finished.

Bounds, checked before any upstream works on it: the body (``limits.max_body_bytes``),
the number of prompts (``limits.max_completion_prompts``), the generations they ask for
(prompts * max(n, best_of), ``limits.max_completion_choices``), ``max_tokens`` against the
model's context length, and a prompt of token ids (whose length is its exact token count)
plus ``max_tokens`` against it too. A text prompt is counted by the upstream's tokenizer,
which refuses it when it is too long (the body size bounds it meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from enclave.config import LimitsSettings
from enclave.errors import ContextLengthExceeded, InvalidRequest
from enclave.gateway.body import parse, read_json
from enclave.gateway.chat import finish, relay
from enclave.gateway.chat.prepare import Prompt, check_context, keep_for_audit
from enclave.gateway.record import call_record
from enclave.profiles import PREFIX
from enclave.protocol import CompletionRequest
from enclave.router import Pool, Router

if TYPE_CHECKING:
    from enclave.gateway.access import ModelScope
    from enclave.gateway.services import Services

PROMPTS = "limits.max_completion_prompts"
CHOICES = "limits.max_completion_choices"


async def completions(request: Request, services: Services, scope: ModelScope) -> Response:
    router = services.router  # this call's snapshot, whatever a reload does meanwhile
    limits = services.settings.limits
    body = await read_json(request, int(limits.max_body_bytes))
    parsed = parse(CompletionRequest, body)
    pool = resolve(router, parsed.model, scope)
    record = call_record(request)
    record.model, record.stream = pool.public, parsed.stream
    check_prompts(parsed, limits, pool)
    keep_for_audit(record, services.settings.audit.content, body.get("prompt"), [])
    prompt = Prompt(body, parsed, pool, pool.public, record, {}, "completions")
    if parsed.stream:
        streamed = await relay.stream(request, router, prompt)
        return finish.sse_response(prompt, streamed, streamed.events)
    return finish.json_response(prompt, await relay.complete(request, router, prompt))


def resolve(router: Router, name: str, scope: ModelScope) -> Pool:
    """The chat pool serving ``name`` (aliases and ``default`` included); an assistant is
    refused: it is a conversation, not a text to continue."""
    if name.startswith(PREFIX):
        raise InvalidRequest(
            f"{name} is an assistant: it answers POST /v1/chat/completions only, "
            "not the legacy /v1/completions",
            param="model",
        )
    pool = router.resolve(name, "chat", visible=scope.allows)
    scope.check(pool.public)
    return pool


def check_prompts(parsed: CompletionRequest, limits: LimitsSettings, pool: Pool) -> None:
    """Refuse a batch over ``limits.max_completion_prompts`` or, with ``n``/``best_of``,
    over ``limits.max_completion_choices`` generations, and a length the model
    cannot hold: ``max_tokens``, or a prompt of token ids and ``max_tokens`` together."""
    prompts = parsed.prompts()
    if len(prompts) > limits.max_completion_prompts:
        raise InvalidRequest(
            f"{len(prompts)} prompts; {PROMPTS} allows {limits.max_completion_prompts} per request",
            param="prompt",
        )
    choices = len(prompts) * max(parsed.n or 1, parsed.best_of or 1)
    if choices > limits.max_completion_choices:
        raise InvalidRequest(
            f"{len(prompts)} prompts * max(n, best_of) make {choices} generations; "
            f"{CHOICES} allows {limits.max_completion_choices} per request",
            param="n",
        )
    check_context(parsed, pool)
    # prompt + max_tokens may fill the context exactly (check_context, not knowing the
    # prompt's length, needs max_tokens alone below it: the prompt takes a token at least)
    limit = pool.context_length()
    longest = max((len(p) for p in prompts if isinstance(p, list)), default=0)
    wanted = longest + (parsed.max_tokens or 0)
    if limit is not None and longest and wanted > limit:
        raise ContextLengthExceeded(
            f"a prompt of {longest} tokens and max_tokens {parsed.max_tokens or 0} make "
            f"{wanted}, over the context length of {pool.public}, {limit} tokens",
            param="prompt",
        )
