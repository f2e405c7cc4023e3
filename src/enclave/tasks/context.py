"""What a step or tool sees of the run it works for: :class:`RunContext`.

The worker makes one per attempt of a run. Steps never touch the database or the router
themselves: they report through ``progress``/``log``/``emit`` and call models through
``chat``, so every event is recorded in order and every token counted against the run's
budget. A cancelled run cancels the asyncio task running its steps (an upstream call in
flight is dropped with it): steps need no cancellation checks of their own, but work
they hand to threads or processes must stop when the awaiting task is cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from enclave.knowledge.service import KnowledgeBases
    from enclave.taskconfig import TaskLimits, TasksSettings


class RunContext(Protocol):
    run_id: str
    task: str  # the task's name ("" for an ad hoc run)
    owner: str | None  # the user who started it; None when authentication is off
    attempt: int  # 1 for the first
    params: dict[str, Any]  # validated against the definition's params, defaults applied
    settings: TasksSettings  # read when the attempt started
    limits: TaskLimits  # the settings' limits, lowered by the definition's
    step: str  # the id of the step running now ("" between steps)

    @property
    def output_dir(self) -> Path:
        """This run's own folder under ``tasks.output_dir`` (made when first asked for)."""
        ...

    async def progress(self, percent: float | None = None, message: str | None = None) -> None:
        """A ``progress`` event: ``percent`` of the whole run (0-100) and/or a line."""
        ...

    async def log(self, message: str, level: str = "info") -> None:
        """A ``log`` event."""
        ...

    async def emit(self, type: str, **data: Any) -> None:
        """Any other event (``step``, ``tool_call``...); ``data`` must be JSON-able."""
        ...

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed OpenAI chat completion through the gateway's router (``model``
        names a model or alias as on /v1). Its usage counts against ``limits.max_tokens``
        (over it: :class:`enclave.errors.TooManyRequests` naming ``tasks.limits.max_tokens``).
        Upstream errors are raised as the gateway's :class:`enclave.errors.EnclaveError`."""
        ...

    def knowledge(self) -> KnowledgeBases:
        """The knowledge bases of this process."""
        ...

    def add_output(self, path: Path) -> None:
        """Record a file written under :attr:`output_dir` as one of the run's results."""
        ...
