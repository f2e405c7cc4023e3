"""The built-in task templates: ``log-digest``, ``kb-classify``, ``search`` and the
internal ``kb-ingest`` (what a knowledge-base upload runs).

The first three are YAML files here holding their raw definitions (the JSON of
docs/tasks.md); ``kb-ingest`` is a dict in :mod:`.kb_ingest`. :func:`builtin` gives them;
the task service parses them like any other definition and lists them as read-only tasks.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from enclave.tasks.templates.kb_ingest import KB_INGEST_TASK

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
    found[KB_INGEST_TASK["name"]] = copy.deepcopy(KB_INGEST_TASK)
    return found
