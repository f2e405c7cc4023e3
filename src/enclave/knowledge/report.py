"""What an ingestion reports: progress while it runs, and what it changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    chunks_done: int
    current: str  # the source just handled
    chunks_total: int = 0  # chunks of the files read so far


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)  # sources new to the knowledge base
    updated: list[str] = field(default_factory=list)  # changed: old chunks replaced
    unchanged: list[str] = field(default_factory=list)  # same SHA-256: skipped
    failed: dict[str, str] = field(default_factory=dict)  # source → why
    removed: list[str] = field(default_factory=list)  # pruned: gone from a directory
    chunks: int = 0  # chunks embedded and stored
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated",
                 f"{len(self.unchanged)} unchanged"]  # fmt: skip
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        rate = self.chunks / self.seconds if self.seconds else 0.0
        return f"{', '.join(parts)}; {self.chunks} chunks in {self.seconds:.1f} s ({rate:.0f}/s)"

    def changes(self, most: int = 50) -> dict[str, object]:
        """What changed, for the audit record: sources (the first ``most``), counts."""
        changed = {"added": self.added, "updated": self.updated, "removed": self.removed,
                   "failed": list(self.failed)}  # fmt: skip
        detail: dict[str, object] = {key: value[:most] for key, value in changed.items() if value}
        detail["chunks"] = self.chunks
        return detail


Progress = Callable[[IngestProgress], Awaitable[None] | None]  # awaited when it is async
