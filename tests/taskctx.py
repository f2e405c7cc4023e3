"""A small, honest :class:`~enclave.tasks.context.RunContext` for the tests of step kinds,
tools and the agent loop, which do not need the worker or the database of runs.

It records every event in order, keeps the run's output folder under a temporary
directory, and makes its model calls over HTTP to a real (fake) upstream, counting their
tokens against ``limits.max_tokens`` as the worker's context does. :func:`run_steps`
runs a definition's steps the way the workflow does (render the strings with Jinja's
sandbox, validate the options, run), so the built-in templates can be run here too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from enclave.errors import TooManyRequests, UpstreamError
from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks import registry

if TYPE_CHECKING:
    from enclave.knowledge.service import KnowledgeBases


@dataclass
class RecordingContext:
    home: Path
    settings: TasksSettings = field(default_factory=TasksSettings)
    upstream: str | None = None  # the fake's /v1 URL
    kbs: KnowledgeBases | None = None
    run_id: str = field(default_factory=lambda: f"run_{secrets.token_hex(8)}")
    task: str = "test"
    owner: str | None = "alice"
    attempt: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    tokens: int = 0
    step: str = ""

    limits: TaskLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = self.settings.limits

    @property
    def output_dir(self) -> Path:
        folder = self.settings.outputs(self.home) / self.run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def progress(self, percent: float | None = None, message: str | None = None) -> None:
        self.events.append({"type": "progress", "percent": percent, "message": message})

    async def log(self, message: str, level: str = "info") -> None:
        self.events.append({"type": "log", "level": level, "message": message})

    async def emit(self, type: str, **data: Any) -> None:
        self.events.append({"type": type, **data})

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.upstream is not None, "this context has no upstream"
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.post(f"{self.upstream}/chat/completions", json=body)
        if response.status_code != 200:
            raise UpstreamError(f"upstream answered {response.status_code}: {response.text}")
        answer: dict[str, Any] = response.json()
        self.tokens += int((answer.get("usage") or {}).get("total_tokens", 0))
        if self.tokens > self.limits.max_tokens:
            raise TooManyRequests(
                f"the run used {self.tokens} tokens, more than tasks.limits.max_tokens "
                f"({self.limits.max_tokens})"
            )
        return answer

    def knowledge(self) -> KnowledgeBases:
        assert self.kbs is not None, "this context has no knowledge bases"
        return self.kbs

    def add_output(self, path: Path) -> None:
        self.outputs.append(path)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events of one type."""
        return [event for event in self.events if event["type"] == kind]


async def run_step(ctx: RecordingContext, kind: str, **options: Any) -> dict[str, Any]:
    """Run one step of ``kind`` with ``options`` (validated by the kind's model)."""
    found = registry.step_kind(kind)
    assert found is not None, kind
    return await found.run(ctx, found.options.model_validate(options))


def render(value: Any, context: dict[str, Any]) -> Any:
    """Strings rendered with Jinja's sandbox (StrictUndefined), inside lists and dicts."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    if isinstance(value, str):
        return environment.from_string(value).render(context)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


async def run_steps(
    ctx: RecordingContext, definition: dict[str, Any], params: dict[str, Any], *,
    until: str | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Each step's output by id, up to and with ``until``; params' defaults applied."""
    given = {name: spec["default"] for name, spec in definition["params"].items()
             if "default" in spec}  # fmt: skip
    given.update(params)
    now = datetime.now(UTC)
    run = {"id": ctx.run_id, "owner": ctx.owner, "attempt": ctx.attempt,
           "date": now.strftime("%Y-%m-%d"), "now": now.isoformat()}  # fmt: skip
    outputs: dict[str, dict[str, Any]] = {}
    for step in definition["steps"]:
        options = {k: v for k, v in step.items() if k not in {"id", "kind", "title"}}
        context = {"params": given, "steps": outputs, "run": run, "task": definition["name"]}
        ctx.step = step["id"]
        outputs[step["id"]] = await run_step(ctx, step["kind"], **render(options, context))
        if step["id"] == until:
            break
    return outputs
