"""Running a definition's steps, in order, for one attempt of a run.

Each step's options are rendered (Jinja2 sandbox) against ``params``, the outputs of the
steps before it, ``run`` and ``task``, validated again by the kind's options model, and
run; ``step`` events bracket it and a ``progress`` event follows it. The result is the
last step's output, or the output of the step the definition's ``result`` names.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from enclave.errors import EnclaveError, InvalidRequest
from enclave.tasks import registry, templating
from enclave.tasks.definition import TaskDefinition, check_options
from enclave.tasks.repo import EventSpec
from enclave.tasks.runctx import RunCtx


class StepFailed(Exception):
    """A step failed; ``cause`` is what it raised."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"step {step!r} failed: {describe(cause)}")
        self.step = step
        self.cause = cause


def describe(error: BaseException) -> str:
    if isinstance(error, EnclaveError):
        return error.message
    return str(error) or type(error).__name__


def error_type(error: BaseException) -> str:
    if isinstance(error, StepFailed):
        return error_type(error.cause)
    return error.type if isinstance(error, EnclaveError) else "step_error"


def context(ctx: RunCtx, defn: TaskDefinition, outputs: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now().astimezone(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    run = {"id": ctx.run_id, "owner": ctx.owner, "attempt": ctx.attempt,
           "date": now.strftime("%Y-%m-%d"), "now": stamp,
           "files_hint": ctx.files_hint}  # fmt: skip
    return {"params": ctx.params, "steps": outputs, "run": run, "task": defn.name}


async def run_steps(ctx: RunCtx, defn: TaskDefinition) -> Any:
    outputs: dict[str, Any] = {}
    count = len(defn.steps)
    for index, step in enumerate(defn.steps):
        head = {"step": step.id, "kind": step.kind, "index": index, "count": count}
        if step.title:
            head["title"] = step.title
        await ctx.emit("step", **head, status="started")
        ctx.step = step.id  # tool_call events name it
        try:
            where = f"steps[{index}]"
            outputs[step.id] = await _run_one(
                ctx, defn, step.kind, step.options, outputs=outputs, where=where
            )
        except Exception as exc:
            await ctx.emit("step", **head, status="failed", error=describe(exc))
            raise StepFailed(step.id, exc) from exc
        finally:
            ctx.step = ""
        percent = 100.0 * (index + 1) / count
        done: list[EventSpec] = [
            ("step", {**head, "status": "done"}),
            ("progress", {"percent": percent}),
        ]
        if index + 1 < count:
            await ctx.record(done, {"progress_percent": percent})
        else:  # written with the result, in the same transaction
            ctx.defer(done, {"progress_percent": percent})
    return outputs[defn.result] if defn.result else outputs[defn.steps[-1].id]


async def _run_one(
    ctx: RunCtx, defn: TaskDefinition, kind_name: str, options: dict[str, Any], *,
    outputs: dict[str, Any], where: str,
) -> dict[str, Any]:  # fmt: skip
    kind = registry.step_kind(kind_name)
    if kind is None:
        raise InvalidRequest(f"{where}.kind: step kind {kind_name!r} is not available",
                             param=f"{where}.kind")  # fmt: skip
    rendered = await templating.render_async(
        options, context(ctx, defn, outputs), where, ctx.limits
    )
    opts = check_options(kind.options, rendered, where, rendered=True)
    return await kind.run(ctx, opts)
