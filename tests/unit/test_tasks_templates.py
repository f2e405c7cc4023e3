"""The built-in templates are well formed, and step options take templates in any field
until they are rendered."""

from __future__ import annotations

import importlib.util
import re

import pytest
from pydantic import ValidationError

from enclave.tasks import registry
from enclave.tasks.templates import builtin

STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def test_builtin_templates_are_well_formed() -> None:
    templates = builtin()
    assert set(templates) == {"log-digest", "kb-classify", "search", "kb-ingest"}
    assert builtin() is not templates  # fresh objects: a caller may change its copy
    for name, definition in templates.items():
        assert definition["name"] == name
        assert definition["description"]
        for param, spec in definition["params"].items():
            types = {"string", "integer", "number", "boolean", "array", "object"}
            assert spec["type"] in types, param
            assert spec["description"], param
        ids = [step["id"] for step in definition["steps"]]
        assert len(set(ids)) == len(ids)
        assert all(STEP_ID.match(i) for i in ids), ids
        assert definition.get("result", ids[-1]) in ids
        for step in definition["steps"]:
            assert step["kind"] in registry.step_names(), step
            if importlib.util.find_spec(registry.step_names()[step["kind"]].split(":")[0]):
                kind = registry.step_kind(step["kind"])
                assert kind is not None
                options = {k: v for k, v in step.items() if k not in {"id", "kind", "title"}}
                kind.options.model_validate(options)  # templates stand in where needed
    assert templates["search"]["params"]["query"].get("default") is None  # required


def test_a_template_stands_in_any_field_until_rendered() -> None:
    kind = registry.step_kind("kb_search")
    assert kind is not None
    kind.options.model_validate({"kb": "a", "query": "q", "k": "{{ params.k }}"})
    assert kind.options.model_validate({"kb": "a", "query": "q", "k": "7"}).k == 7  # type: ignore[attr-defined]
    for bad in [{"kb": "a", "query": "q", "k": "many"},  # not a template, not a number
                {"kb": "a", "query": "q", "k": "{{ params.k }}", "extra": 1},
                {"kb": "a", "k": "{{ params.k }}"}]:  # fmt: skip
        with pytest.raises(ValidationError):
            kind.options.model_validate(bad)
