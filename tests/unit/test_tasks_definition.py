"""Task definitions, params, templates and schedule bodies: every bad input is refused
with a 400 naming its field; templates render in a sandbox."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from enclave.errors import InvalidRequest
from enclave.taskconfig import TaskLimits
from enclave.tasks import templating
from enclave.tasks.definition import parse_definition, validate_params
from enclave.tasks.schedules import schedule_body
from tests.unit.tasks_times import T0

GOOD: dict[str, Any] = {
    "name": "digest",
    "description": "sleep, then nothing",
    "params": {
        "seconds": {"type": "number", "default": 0.1},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "who": {"type": "string"},
    },
    "limits": {"timeout_s": 60, "max_attempts": 1},
    "steps": [
        {"id": "wait", "kind": "sleep", "title": "Wait", "seconds": "{{ params.seconds }}"},
        {"id": "done", "kind": "noop"},
    ],
    "result": "wait",
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the field at ``path`` (dots and [i]) set to ``value`` (or removed)."""
    data = copy.deepcopy(GOOD)
    parts = path.replace("[", ".").replace("]", "").split(".")
    target: Any = data
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    key: Any = int(last) if last.isdigit() else last
    if value is REMOVE:
        del target[key]
    else:
        target[key] = value
    return data


REMOVE = object()

BAD_DEFINITIONS = [
    (changed("name", "no spaces allowed"), "name"),
    (changed("name", REMOVE), "name"),
    (changed("description", 3), "description"),
    ({**GOOD, "colour": "red"}, "colour"),
    (changed("params.seconds.type", "float"), "params.seconds.type"),
    (changed("params.seconds.default", "slow"), "params.seconds.default"),
    (changed("params.mode.default", "c"), "params.mode.default"),
    (changed("params.mode.enum", []), "params.mode.enum"),
    (changed("params.who.required", "yes"), "params.who.required"),
    (changed("params.who.colour", 1), "params.who.colour"),
    (changed("params", {"bad-name": {"type": "string"}}), "params.bad-name"),
    (changed("limits.timeout_s", 10**9), "limits.timeout_s"),
    (changed("limits.max_attempts", 0), "limits.max_attempts"),
    (changed("limits", {"max_steps": 3}), "limits.max_steps"),
    (changed("retry_on_error", "no"), "retry_on_error"),
    (changed("steps", []), "steps"),
    (changed("steps[0].id", "Wait"), "steps[0].id"),
    (changed("steps[1].id", "wait"), "steps[1].id"),
    (changed("steps[1].kind", "teleport"), "steps[1].kind"),
    (changed("steps[0].seconds", "soon"), "steps[0].seconds"),
    (changed("steps[0].seconds", "{{ params.seconds "), "steps[0].seconds"),
    (changed("steps[0].title", 5), "steps[0].title"),
    (changed("steps[1].colour", "red"), "steps[1].colour"),
    (changed("result", "nope"), "result"),
    ([1, 2], "definition"),
]


def test_a_good_definition_parses() -> None:
    defn = parse_definition(GOOD)
    assert [s.id for s in defn.steps] == ["wait", "done"]
    assert defn.params["who"].required
    assert not defn.params["seconds"].required
    assert defn.effective_limits(TaskLimits()).timeout_s == 60


@pytest.mark.parametrize(("data", "field"), BAD_DEFINITIONS)
def test_every_bad_definition_names_its_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_definition(data)
    assert caught.value.param == field
    assert caught.value.status == 400


def test_too_many_steps_names_the_limit() -> None:
    steps = [{"id": f"s{i}", "kind": "noop"} for i in range(4)]
    with pytest.raises(InvalidRequest, match=r"tasks\.limits\.max_steps") as caught:
        parse_definition({**GOOD, "steps": steps, "result": None}, base=TaskLimits(max_steps=3))
    assert caught.value.param == "steps"


def test_params_get_defaults_and_bad_ones_name_the_param() -> None:
    defn = parse_definition(GOOD)
    assert validate_params(defn, {"who": "ann", "seconds": 2}) == {
        "who": "ann", "seconds": 2.0, "mode": "a",
    }  # fmt: skip
    for given, field in [
        ({}, "params.who"),
        ({"who": 1}, "params.who"),
        ({"who": "x", "seconds": True}, "params.seconds"),
        ({"who": "x", "mode": "c"}, "params.mode"),
        ({"who": "x", "extra": 1}, "params.extra"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            validate_params(defn, given)
        assert caught.value.param == field, given


def test_templates_render_strings_only_and_strictly() -> None:
    context = {"params": {"n": 3, "who": "ann"}, "steps": {"a": {"text": "hi"}}}
    value = {"x": "{{ params.who }}-{{ steps.a.text }}", "n": 3, "list": ["{{ params.n * 2 }}"]}
    assert templating.render(value, context, "steps[0]") == {"x": "ann-hi", "n": 3, "list": ["6"]}
    with pytest.raises(InvalidRequest) as caught:
        templating.render({"x": ["{{ params.missing }}"]}, context, "steps[2]")
    assert caught.value.param == "steps[2].x[0]"


def test_the_sandbox_refuses_unsafe_attributes() -> None:
    escape = "{{ params.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InvalidRequest):
        templating.render(escape, {"params": {}}, "steps[0].prompt")
    with pytest.raises(InvalidRequest):
        templating.render("{{ ''.__class__ }}{{ cycler.__init__.__globals__ }}", {}, "x")


BAD_SCHEDULES = [
    ({"cron": "0 7 * * *"}, "task"),
    ({"task": "t"}, "cron"),
    ({"task": "t", "cron": "0 7 * * *", "every_s": 60}, "every_s"),
    ({"task": "t", "cron": "61 7 * * *"}, "cron"),
    ({"task": "t", "cron": "0 7 * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"task": "t", "every_s": 0.1}, "every_s"),
    ({"task": "t", "every_s": 60, "timezone": "UTC"}, "timezone"),
    ({"task": "t", "at": "2026-12-06T07:00:00"}, "at"),
    ({"task": "t", "at": "tomorrow"}, "at"),
    ({"task": "t", "delay_s": -1}, "delay_s"),
    ({"task": "t", "delay_s": 5, "missed": "maybe"}, "missed"),
    ({"task": "t", "delay_s": 5, "params": [1]}, "params"),
    ({"task": "t", "delay_s": 5, "colour": 1}, "colour"),
]


@pytest.mark.parametrize(("data", "field"), BAD_SCHEDULES)
def test_every_bad_schedule_names_its_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        schedule_body(data, T0)
    assert caught.value.param == field


def test_schedule_bodies() -> None:
    cron = schedule_body({"task": "t", "cron": "0 7 * * *", "timezone": "Asia/Shanghai"}, T0)
    assert (cron.kind, cron.timezone, cron.missed) == ("cron", "Asia/Shanghai", "skip")
    later = schedule_body({"task": "t", "delay_s": 30}, T0)
    assert later.kind == "once"
    assert later.at is not None
    assert (later.at - T0).total_seconds() == 30
    at = schedule_body({"task": "t", "at": "2026-12-06T07:00:00+08:00"}, T0)
    assert at.at is not None
    assert at.at.hour == 23
