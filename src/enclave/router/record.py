"""What happened to one call, filled in as it goes: for the access log, metrics and audit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CallRecord:
    model: str | None = None
    member: str | None = None
    pool: str | None = None  # the public model whose pool answered
    fell_back: bool = False  # that pool is a fallback (router.fallbacks) of the one asked
    attempts: int = 0
    retries: int = 0
    queue_s: float = 0.0
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    outcome: str | None = None  # done | upstream_error | client_disconnected | ...
    stream: bool = False
    images: list[str] = field(default_factory=list)  # SHA-256 of each image, for the audit
    content: str | None = None  # what the audit keeps of the request (audit.content)
    draft_tokens: int | None = None  # speculative decoding: tokens drafted, and accepted
    draft_accepted: int | None = None

    def usage(self, usage: object) -> None:
        """Take the token counts from an OpenAI ``usage`` object, when there is one."""
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens = prompt if isinstance(prompt, int) else self.prompt_tokens
            if isinstance(completion, int):
                self.completion_tokens = completion

    def timings(self, value: object) -> None:
        """Take the speculative decoding counts from llama.cpp's ``timings`` object
        (``draft_n``, ``draft_n_accepted``; there only when the engine drafted)."""
        if isinstance(value, dict):
            drafted, accepted = value.get("draft_n"), value.get("draft_n_accepted")
            if isinstance(drafted, int) and isinstance(accepted, int):
                self.draft_tokens, self.draft_accepted = drafted, accepted
