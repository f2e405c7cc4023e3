"""The built-in task templates: ``log-digest``, ``kb-classify`` and ``search``.

Each is a YAML file here holding its raw definition (the JSON of docs/tasks.md);
:func:`builtin` reads them. The task service parses them like any other definition and
lists them as read-only tasks.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml

NAMES = ("log-digest", "kb-classify", "search")


@cache
def _text(name: str) -> str:
    return files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def builtin() -> dict[str, dict[str, Any]]:
    """The built-in templates' raw definitions by name (fresh objects: callers may edit)."""
    found: dict[str, dict[str, Any]] = {}
    for name in NAMES:
        definition = yaml.safe_load(_text(name))
        assert isinstance(definition, dict)
        assert definition["name"] == name
        found[name] = definition
    return found
