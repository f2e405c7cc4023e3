from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Open(BaseModel):
    """A wire object that keeps fields it does not know."""

    model_config = ConfigDict(extra="allow")


class Closed(BaseModel):
    """A wire object we produce ourselves."""

    model_config = ConfigDict(extra="forbid")
