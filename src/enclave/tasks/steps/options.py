"""The base of the built-in step kinds' options: a template may stand in any field.

A definition is checked when it is saved, before its templates can be rendered, so a
field that is not a string (``k: "{{ params.k }}"``, ``since_hours: "{{ params.hours }}"``)
would fail there. :class:`Options` lets a field whose value is a template through at that
check; the value is checked for real once rendered, before the step runs.
"""

from __future__ import annotations

from typing import Any, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="wrap")
    @classmethod
    def _templates_later(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, dict) or not all(
                error["loc"] and is_template(data.get(str(error["loc"][0])))
                for error in exc.errors()
            ):
                raise
            # only unrendered templates were wrong: they are checked once rendered
            return cast(Self, cls.model_construct(**data))
