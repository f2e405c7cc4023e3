"""Templates in task definitions: Jinja2's sandbox, strict about undefined names.

Only string values are rendered (recursively inside lists and dicts); a template can read
the context it is given (``params``, ``steps``, ``run``, ``task``) and nothing else:
the sandbox refuses unsafe attributes (``__class__``, ``mro``...), and undefined names
are errors, never silently empty.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from enclave.errors import InvalidRequest


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
            except TemplateError as exc:
                raise InvalidRequest(f"{path}: bad template: {exc}", param=path) from exc


def render(value: Any, context: dict[str, Any], where: str) -> Any:
    """``value`` with every string rendered against ``context``; a failure raises
    :class:`InvalidRequest` naming the field (``where`` and the path inside it)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return environment().from_string(value).render(context)
        except TemplateError as exc:
            raise InvalidRequest(f"{where}: {exc}", param=where) from exc
    if isinstance(value, list):
        return [render(item, context, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: render(item, context, f"{where}.{key}") for key, item in value.items()}
    return value


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, list):
        return [s for i, item in enumerate(value) for s in _strings(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings(item, f"{where}.{key}")]
    return []
