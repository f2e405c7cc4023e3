"""Step kinds and tools: the built-in ones, and plugins from other packages.

A company adds its own without forking, like simonw/llm's plugin hooks: a package
declares an entry point in the group ``enclave.steps`` (or ``enclave.tools``) naming a
:class:`StepKind` (or :class:`Tool`) object::

    [project.entry-points."enclave.tools"]
    ticket_lookup = "acme_enclave:TICKET_LOOKUP"

A plugin may not take a built-in name. The built-in ones are imported only when first
asked for, so listing names costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from enclave.tasks.context import RunContext

STEP_GROUP = "enclave.steps"
TOOL_GROUP = "enclave.tools"

# name → "module:attribute"
BUILTIN_STEPS = {
    "noop": "enclave.tasks.steps.basic:NOOP",
    "sleep": "enclave.tasks.steps.basic:SLEEP",
    "llm": "enclave.tasks.steps.llm:LLM",
    "agent": "enclave.tasks.steps.agent:AGENT",
    "read_files": "enclave.tasks.steps.files:READ_FILES",
    "write_file": "enclave.tasks.steps.files:WRITE_FILE",
    "kb_search": "enclave.tasks.steps.kb:KB_SEARCH",
    "kb_ingest": "enclave.tasks.steps.kb_ingest:KB_INGEST",
    "http": "enclave.tasks.steps.http:HTTP",
    "command": "enclave.tasks.steps.command:COMMAND",
}
BUILTIN_TOOLS = {
    "read_file": "enclave.tasks.tools.files:READ_FILE",
    "list_files": "enclave.tasks.tools.files:LIST_FILES",
    "write_file": "enclave.tasks.tools.files:WRITE_FILE",
    "kb_search": "enclave.tasks.tools.kb:KB_SEARCH",
    "http_get": "enclave.tasks.tools.http:HTTP_GET",
    "run_command": "enclave.tasks.tools.command:RUN_COMMAND",
}


@dataclass(frozen=True)
class StepKind:
    """A kind of step. ``options`` validates the step's own fields (everything but ``id``,
    ``kind`` and ``title``); string fields may hold templates, rendered before ``run``.
    ``run`` returns the step's output, which later steps' templates read as
    ``steps.<id>.<field>`` (it must be JSON-able)."""

    name: str
    description: str
    options: type[BaseModel]
    run: Callable[[RunContext, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """A function an agent step may offer the model. ``parameters`` validates the model's
    arguments and gives the JSON schema sent as the tool's ``parameters``; ``run`` returns
    the text the model reads back."""

    name: str
    description: str
    parameters: type[BaseModel]
    run: Callable[[RunContext, Any], Awaitable[str]]

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters.model_json_schema(),
        }}  # fmt: skip


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _plugins(group: str, builtin: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for point in entry_points(group=group):
        if point.name in builtin:
            raise ValueError(f"plugin {point.value} takes the built-in name {point.name!r}")
        found[point.name] = point.value
    return found


@cache
def step_names() -> dict[str, str]:
    return {**BUILTIN_STEPS, **_plugins(STEP_GROUP, BUILTIN_STEPS)}


@cache
def tool_names() -> dict[str, str]:
    return {**BUILTIN_TOOLS, **_plugins(TOOL_GROUP, BUILTIN_TOOLS)}


@cache
def step_kind(name: str) -> StepKind | None:
    """The step kind ``name``, or ``None`` when there is none."""
    target = step_names().get(name)
    return _checked(_load(target), StepKind, name) if target else None


@cache
def tool(name: str) -> Tool | None:
    """The tool ``name``, or ``None`` when there is none."""
    target = tool_names().get(name)
    return _checked(_load(target), Tool, name) if target else None


def _checked(found: Any, kind: type[Any], name: str) -> Any:
    if not isinstance(found, kind) or found.name != name:
        raise TypeError(f"{name!r} does not name a {kind.__name__} called {name!r}")
    return found
