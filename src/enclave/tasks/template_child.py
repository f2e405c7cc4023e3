"""The process that renders task templates: ``python -m enclave.tasks.template_child BYTES``.

Jinja's sandbox keeps a template away from Python's internals, but not from time and
memory: ``{{ "x" * 10**9 }}``, nested ``range`` loops or a recursive macro run inside one
C call or one loop that nothing in the same process can stop. So templates are rendered
here, in a process whose address space is capped at ``BYTES``
(``tasks.limits.template_memory``) and which the gateway kills when a render takes longer
than ``tasks.limits.template_seconds`` (:mod:`enclave.tasks.templating`).

It says ``ready`` once started; then one request a line on stdin, one answer a line on
stdout, both JSON:
``{"templates": [[where, text], ...], "context": {...}, "chars": N}`` →
``{"rendered": [text, ...]}`` or ``{"error": message, "where": where, "kind": kind}``,
kind ``template`` (a template error: undefined name, unsafe attribute...), ``chars``
(output over N characters) or ``memory`` (then this process exits).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _limit_memory(size: int) -> None:
    try:
        import resource
    except ImportError:  # not on this system: the time limit still holds
        return
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:  # never above what this process may have
        size = min(size, hard)
    resource.setrlimit(resource.RLIMIT_AS, (size, hard))


def _answer(request: dict[str, Any], environment: Any) -> dict[str, Any]:
    rendered: list[str] = []
    left = int(request["chars"])
    for where, text in request["templates"]:
        try:
            out = environment.from_string(text).render(request["context"])
        except MemoryError:
            return {"error": "", "where": where, "kind": "memory"}
        except Exception as exc:  # TemplateError, and what a filter raised (TypeError...)
            return {"error": str(exc) or type(exc).__name__, "where": where, "kind": "template"}
        left -= len(out)
        if left < 0:
            return {"error": "", "where": where, "kind": "chars"}
        rendered.append(out)
    return {"rendered": rendered}


def main() -> None:
    _limit_memory(int(sys.argv[1]))
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            answer = _answer(json.loads(line), environment)
        except MemoryError:  # the request itself did not fit
            answer = {"error": "", "where": "", "kind": "memory"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if answer.get("kind") == "memory":
            return


if __name__ == "__main__":
    main()
