"""Task definitions: parsed and checked up front, every refusal naming its field.

``parse_definition(data)`` checks a raw definition (JSON/YAML as a dict) against the
contract in docs/tasks.md: name, params (types, defaults, enums), limits (which may only
lower ``tasks.limits``), steps (ids, kinds from the registry, each kind's options with
templates allowed in strings). ``validate_params(defn, given)`` checks a run's params.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from enclave.errors import InvalidRequest
from enclave.taskconfig import NAME_PATTERN, TaskLimits
from enclave.tasks import registry, templating

STEP_ID = r"^[a-z][a-z0-9_]{0,31}$"
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}  # fmt: skip
TOP_FIELDS = {"name", "description", "params", "limits", "retry_on_error", "steps", "result"}
PARAM_FIELDS = {"type", "default", "description", "required", "enum"}
LIMIT_FIELDS = ("timeout_s", "max_tokens", "max_attempts", "agent_max_turns")


@dataclass(frozen=True)
class Param:
    type: str
    default: Any = None
    has_default: bool = False
    description: str = ""
    required: bool = True
    enum: list[Any] | None = None


@dataclass(frozen=True)
class Step:
    id: str
    kind: str
    title: str | None
    options: dict[str, Any]


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    description: str
    params: dict[str, Param]
    limits: dict[str, float | int]
    retry_on_error: bool
    steps: list[Step]
    result: str | None
    raw: dict[str, Any] = field(repr=False)

    def effective_limits(self, base: TaskLimits) -> TaskLimits:
        """``base`` lowered by this definition's ``limits``."""
        return base.model_copy(update=self.limits)


def bad(message: str, param: str) -> InvalidRequest:
    """A 400 whose message starts with, and whose ``param`` is, the field at fault."""
    return InvalidRequest(f"{param}: {message}", param=param)


def known_fields(data: dict[str, Any], allowed: Collection[str]) -> None:
    """Refuse the first field of ``data`` not in ``allowed``, naming it."""
    for key in data:
        if key not in allowed:
            raise bad(f"unknown field (allowed: {', '.join(sorted(allowed))})", key)


def parse_definition(data: Any, *, base: TaskLimits | None = None) -> TaskDefinition:
    """Check ``data``; :class:`InvalidRequest` naming the first bad field."""
    if not isinstance(data, dict):
        raise bad("a task definition is a JSON object", "definition")
    known_fields(data, TOP_FIELDS)
    name = data.get("name")
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise bad(f"a name matching {NAME_PATTERN} is required", "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise bad("must be a string", "description")
    retry = data.get("retry_on_error", False)
    if not isinstance(retry, bool):
        raise bad("must be true or false", "retry_on_error")
    base = base or TaskLimits()
    steps = _steps(data.get("steps"), base)
    result = data.get("result")
    if result is not None and result not in {s.id for s in steps}:
        raise bad("must name one of the steps' ids", "result")
    return TaskDefinition(
        name=name, description=description, params=_params(data.get("params", {})),
        limits=_limits(data.get("limits", {}), base), retry_on_error=retry, steps=steps,
        result=result, raw=data,
    )  # fmt: skip


def _params(data: Any) -> dict[str, Param]:
    if not isinstance(data, dict):
        raise bad("must be an object of name → {type, default?, ...}", "params")
    return {name: _param(name, spec) for name, spec in data.items()}


def _param(name: str, spec: Any) -> Param:
    where = f"params.{name}"
    if not re.match(PARAM_NAME, name):
        raise bad(f"a parameter name must match {PARAM_NAME}", where)
    if not isinstance(spec, dict):
        raise bad("must be an object {type, default?, description?, required?, enum?}", where)
    for key in spec:
        if key not in PARAM_FIELDS:
            raise bad(
                f"unknown field (allowed: {', '.join(sorted(PARAM_FIELDS))})", f"{where}.{key}"
            )
    kind = spec.get("type", "string")
    if kind not in TYPES:
        raise bad(f"must be one of {', '.join(TYPES)}", f"{where}.type")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise bad("must be a string", f"{where}.description")
    enum = spec.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not enum:
            raise bad("must be a non-empty list", f"{where}.enum")
        for i, item in enumerate(enum):
            _typed(item, kind, f"{where}.enum[{i}]")
    has_default = "default" in spec
    if has_default:
        _typed(spec["default"], kind, f"{where}.default")
        if enum is not None and spec["default"] not in enum:
            raise bad("must be one of the enum's values", f"{where}.default")
    required = spec.get("required", not has_default)
    if not isinstance(required, bool):
        raise bad("must be true or false", f"{where}.required")
    return Param(kind, spec.get("default"), has_default, description, required, enum)


def _typed(value: Any, kind: str, where: str) -> None:
    ok = isinstance(value, TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool))
    if not ok:
        raise bad(f"must be of type {kind}", where)


def _limits(data: Any, base: TaskLimits) -> dict[str, float | int]:
    if not isinstance(data, dict):
        raise bad("must be an object", "limits")
    found: dict[str, float | int] = {}
    for key, value in data.items():
        where = f"limits.{key}"
        if key not in LIMIT_FIELDS:
            raise bad(f"unknown limit (allowed: {', '.join(LIMIT_FIELDS)})", where)
        wanted = (int, float) if key == "timeout_s" else (int,)
        if isinstance(value, bool) or not isinstance(value, wanted) or value <= 0:
            raise bad("must be a positive number", where)
        ceiling = getattr(base, key)
        if value > ceiling:
            raise bad(f"may only lower tasks.limits.{key} ({ceiling}), not raise it", where)
        found[key] = value
    return found


def _steps(data: Any, base: TaskLimits) -> list[Step]:
    if not isinstance(data, list) or not data:
        raise bad("a non-empty list of steps is required", "steps")
    if len(data) > base.max_steps:
        raise bad(f"at most tasks.limits.max_steps ({base.max_steps}) steps", "steps")
    steps: list[Step] = []
    for index, raw in enumerate(data):
        step = _step(raw, f"steps[{index}]")
        if step.id in {s.id for s in steps}:
            raise bad(f"step id {step.id!r} is used twice", f"steps[{index}].id")
        steps.append(step)
    return steps


def _step(raw: Any, where: str) -> Step:
    if not isinstance(raw, dict):
        raise bad("a step is an object {id, kind, title?, ...options}", where)
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not re.match(STEP_ID, step_id):
        raise bad(f"an id matching {STEP_ID} is required", f"{where}.id")
    kind_name = raw.get("kind")
    names = registry.step_names()
    if not isinstance(kind_name, str) or kind_name not in names:
        raise bad(f"must be one of {', '.join(sorted(names))}", f"{where}.kind")
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        raise bad("must be a string", f"{where}.title")
    options = {k: v for k, v in raw.items() if k not in ("id", "kind", "title")}
    templating.check(options, where)
    kind = registry.step_kind(kind_name)
    if kind is None:  # listed but not importable (a part not installed)
        raise bad(f"step kind {kind_name!r} is not available", f"{where}.kind")
    check_options(kind.options, options, where, rendered=False)
    return Step(step_id, kind_name, title, options)


def check_options(
    model: type[BaseModel], options: dict[str, Any], where: str, *, rendered: bool
) -> BaseModel:
    """``options`` validated by ``model``. Before rendering, a string holding a template
    stands for any value, so type errors on those fields are let through."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error.get("loc", ())
            value = _at(options, loc)
            if not rendered and isinstance(value, str) and templating.is_template(value):
                continue
            path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            raise bad(str(error.get("msg", "invalid")), path) from exc
        return model.model_construct(**options)


def _at(value: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def validate_params(defn: TaskDefinition, given: Any) -> dict[str, Any]:
    """``given`` checked against ``defn.params``, defaults applied; a bad one raises
    :class:`InvalidRequest` naming ``params.<name>``."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise bad("must be an object", "params")
    for name in given:
        if name not in defn.params:
            known = ", ".join(sorted(defn.params)) or "none"
            raise bad(f"unknown parameter (this task takes: {known})", f"params.{name}")
    found: dict[str, Any] = {}
    for name, spec in defn.params.items():
        where = f"params.{name}"
        if name in given:
            value = given[name]
            if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            _typed(value, spec.type, where)
            if spec.enum is not None and value not in spec.enum:
                raise bad(f"must be one of {spec.enum}", where)
            found[name] = value
        elif spec.has_default:
            found[name] = spec.default
        elif spec.required:
            raise bad("is required", where)
    return found
