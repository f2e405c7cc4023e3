"""Assistant profiles: what a virtual model (``assistant/NAME``) does before the real one.

A profile names its base model pool, system prompt, knowledge bases, memory policy,
retrieval settings, citation style and default sampling. Profiles come from the config
file (``assistants:``, read-only at run time) and from the admin API (stored in the
database); a name may be defined in only one of them.

A pure pydantic schema at the config layer (the settings file holds profiles), below
:mod:`enclave.assistants`, which runs them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PREFIX = "assistant/"
SAMPLING = frozenset(
    {"temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty",
     "frequency_penalty", "seed", "stop", "top_k", "min_p", "repetition_penalty"}
)  # fmt: skip


class Retrieval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(4, ge=1, le=50, description="chunks put in the prompt")
    min_score: float = Field(
        0.0, ge=0.0, description="drop chunks scoring below (cosine in vector mode)"
    )
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"


class AssistantProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="public: assistant/NAME")
    model: str = Field(min_length=1, description="the model pool that answers")
    description: str = ""
    system_prompt: str = "You are a helpful assistant."
    knowledge: list[str] = Field(default_factory=list, description="knowledge base names")
    memory: Literal["off", "user", "conversation"] = Field(
        "user", description="whose long-term memory: the user's, one conversation's, none"
    )
    memories: int = Field(5, ge=0, le=50, description="long-term memories put in the prompt")
    recent: int = Field(
        6, ge=0, le=100, description="the user's latest turns from other conversations"
    )
    history: int = Field(
        20, ge=0, le=1000, description="stored messages sent when a client sends only its new one"
    )
    extract: bool = Field(True, description="let the model update long-term memory after a turn")
    retrieval: Retrieval = Field(default_factory=Retrieval)
    citations: Literal["none", "field", "markers"] = Field(
        "markers", description="field: a `citations` list; markers: also [n] and a source line"
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="sampling used when a request does not set it"
    )

    @field_validator("defaults")
    @classmethod
    def _sampling_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - SAMPLING)
        if unknown:
            raise ValueError(f"defaults may set only sampling fields, not {', '.join(unknown)}")
        return value

    @property
    def public(self) -> str:
        return PREFIX + self.name
