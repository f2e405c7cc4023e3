"""What ``ask``'s command line asked for, as the client reads it (built by
:mod:`enclave.cli.ask` from its flags; nothing here parses arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AskOptions:
    """The flags of one ``ask`` run. ``None`` means "not given" (settings decide)."""

    question: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    clip: bool = False
    clip_image: bytes | None = None  # set when --clip finds an image on the clipboard
    max_image_side: int | None = None
    verbose: bool = False
    model: str | None = None
    role: str | None = None
    system: str | None = None
    execute: bool = False
    url: str | None = None
    api_key: str | None = None
    max_stdin_bytes: int | None = None
    no_stream: bool = False
    raw: bool = False
    json: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    continue_last: bool = False
    session: str | None = None
    context_chars: int = 24000
    no_history: bool = False
    show: str | None = None

    def setting_flags(self) -> dict[str, Any]:
        """The flags that override ``ask.toml`` and the environment (``askconfig.load``)."""
        return {
            "url": self.url,
            "api_key": self.api_key,
            "model": self.model,
            "role": self.role,
            "max_stdin_bytes": self.max_stdin_bytes,
            "history": False if self.no_history else None,
            "max_image_side": self.max_image_side,
        }
