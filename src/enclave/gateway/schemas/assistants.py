"""``/api/assistants`` and ``/api/admin/assistants``: assistant profiles."""

from __future__ import annotations

from pydantic import BaseModel

from enclave.profiles import AssistantProfile

AssistantCreate = AssistantProfile  # a profile is its own request body


class AssistantPublic(AssistantProfile):
    """A profile, with its public model name and where it was made (config or API)."""

    id: str
    source: str  # config | api

    @classmethod
    def of(cls, profile: AssistantProfile, source: str) -> AssistantPublic:
        return cls.model_construct(**dict(profile), id=profile.public, source=source)


class AssistantDeleted(BaseModel):
    name: str
    deleted: bool
