"""Child processes that render task templates (:mod:`.template_child`), bounded.

A render is sent to an idle child (one is started when none is idle: ~0.1 s, once) and
its answer awaited at most ``tasks.limits.template_seconds``; past that the child is
killed. The child's address space is ``tasks.limits.template_memory``: a template that
needs more fails, and so does output past ``tasks.limits.template_chars``. Each failure
is an error naming the setting and the field. Idle children are kept for the next render
(a few per memory size); they exit when the gateway does (their stdin closes).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from enclave.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from enclave.taskconfig import TaskLimits

KEEP_IDLE = 4  # idle children kept per memory size
START_S = 60.0  # a child's start (imports) under load; not the render's time
SECONDS = "tasks.limits.template_seconds"
MEMORY = "tasks.limits.template_memory"
CHARS = "tasks.limits.template_chars"

_idle: dict[int, list[_Child]] = {}
_lock = threading.Lock()


class _Gone(Exception):
    """The child took too long (``timeout``) or died."""

    def __init__(self, timeout: bool) -> None:
        super().__init__("timeout" if timeout else "died")
        self.timeout = timeout


class _Child:
    def __init__(self, memory: int) -> None:
        self.memory = memory
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fmt: skip
        argv = [sys.executable, "-m", "enclave.tasks.template_child", str(memory)]
        self.process = subprocess.Popen(  # our own module, no shell
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        self.buffer = b""
        self.read_line(START_S)  # "ready": jinja imported, the clock of a render starts now

    def ask(self, request: dict[str, Any], seconds: float) -> dict[str, Any]:
        stdin: IO[bytes] | None = self.process.stdin
        try:
            assert stdin is not None
            stdin.write(json.dumps(request, default=str).encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            raise _Gone(timeout=False) from exc
        answer: dict[str, Any] = json.loads(self.read_line(seconds))
        return answer

    def read_line(self, seconds: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + seconds
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Gone(timeout=True)
            if select.select([fd], [], [], left)[0]:
                piece = os.read(fd, 1 << 16)
                if not piece:
                    raise _Gone(timeout=False)
                self.buffer += piece
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _take(memory: int) -> _Child:
    with _lock:
        idle = _idle.get(memory)
        if idle:
            return idle.pop()
    return _Child(memory)


def _give_back(child: _Child) -> None:
    with _lock:
        idle = _idle.setdefault(child.memory, [])
        if len(idle) < KEEP_IDLE:
            idle.append(child)
            return
    child.close()


@atexit.register
def _close_idle() -> None:
    with _lock:
        children = [child for idle in _idle.values() for child in idle]
        _idle.clear()
    for child in children:
        child.close()


def render_all(
    templates: list[tuple[str, str]], context: dict[str, Any], limits: TaskLimits | None,
    where: str,
) -> list[str]:  # fmt: skip
    """Each ``(path, text)`` of ``templates`` rendered against ``context`` (``where``:
    the step's field, named when the whole render is too slow or too big)."""
    if limits is None:
        from enclave.taskconfig import TaskLimits

        limits = TaskLimits()
    memory, seconds = int(limits.template_memory), limits.template_seconds
    request = {"templates": templates, "context": context, "chars": limits.template_chars}
    child = _take(memory)
    try:
        answer = child.ask(request, seconds)
    except _Gone as gone:
        child.close()
        if gone.timeout:
            raise InvalidRequest(f"{where}: the templates took longer than {SECONDS} "
                                 f"({seconds} s) to render", param=where) from None  # fmt: skip
        raise PayloadTooLarge(
            f"{where}: rendering the templates needed more memory than {MEMORY} ({memory} bytes)",
            param=where,
        ) from None
    if answer.get("kind") == "memory":
        child.close()
        field = answer.get("where") or where
        raise PayloadTooLarge(f"{field}: rendering the template needed more memory than "
                              f"{MEMORY} ({memory} bytes)", param=field)  # fmt: skip
    _give_back(child)
    if "rendered" in answer:
        rendered: list[str] = answer["rendered"]
        return rendered
    field = answer["where"]
    if answer["kind"] == "chars":
        raise PayloadTooLarge(f"{field}: the rendered templates are longer than {CHARS} "
                              f"({limits.template_chars} characters)", param=field)  # fmt: skip
    raise InvalidRequest(f"{field}: {answer['error']}", param=field)
