"""Templates in task definitions: Jinja2's sandbox, strict about undefined names.

Only string values are rendered (recursively inside lists and dicts); a template can read
the context it is given (``params``, ``steps``, ``run``, ``task``) and nothing else:
the sandbox refuses unsafe attributes (``__class__``, ``mro``...), and undefined names
are errors, never silently empty. Rendering happens in a child process bounded in time,
memory and output (``tasks.limits.template_*``): see :mod:`.template_pool`.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from enclave.errors import InvalidRequest

if TYPE_CHECKING:
    from enclave.taskconfig import TaskLimits


@cache
def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def check(value: Any, where: str) -> None:
    """Raise :class:`InvalidRequest` naming ``where`` if a template in ``value`` does not
    parse."""
    for path, text in _strings(value, where):
        if is_template(text):
            try:
                environment().parse(text)
            except (TemplateError, RecursionError) as exc:  # RecursionError: deep nesting
                raise InvalidRequest(f"{path}: bad template: {exc}", param=path) from exc


def render(
    value: Any, context: dict[str, Any], where: str, limits: TaskLimits | None = None
) -> Any:
    """``value`` with every string rendered against ``context``; a failure raises
    :class:`InvalidRequest` naming the field (``where`` and the path inside it).

    Templates are rendered in a child process (:mod:`.template_child`), bounded by
    ``limits.template_seconds``, ``template_memory`` and ``template_chars``; a value
    without templates is returned as it is, without asking it. Blocking: from a coroutine
    call :func:`render_async`."""
    found = [(path, text) for path, text in _strings(value, where) if is_template(text)]
    if not found:
        return value
    from enclave.tasks.template_pool import render_all

    rendered = dict(zip((path for path, _ in found), render_all(found, context, limits, where),
                        strict=True))  # fmt: skip
    return _replace(value, where, rendered)


async def render_async(
    value: Any, context: dict[str, Any], where: str, limits: TaskLimits | None = None
) -> Any:
    """:func:`render` off the event loop (only when there is a template to render)."""
    if not any(is_template(text) for _, text in _strings(value, where)):
        return value
    return await asyncio.to_thread(render, value, context, where, limits)


def _replace(value: Any, where: str, rendered: dict[str, str]) -> Any:
    if isinstance(value, str):
        return rendered.get(where, value)
    if isinstance(value, list):
        return [_replace(item, f"{where}[{i}]", rendered) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _replace(item, f"{where}.{key}", rendered) for key, item in value.items()}
    return value


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, list):
        return [s for i, item in enumerate(value) for s in _strings(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings(item, f"{where}.{key}")]
    return []
