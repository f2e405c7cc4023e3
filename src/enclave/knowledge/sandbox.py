"""Parse one untrusted document in a child process, bounded in time and memory.

Pure-Python parsing (python-docx over lxml, pypdf) cannot be interrupted in a thread, so
:func:`extract_isolated` runs :func:`~enclave.knowledge.documents.extract` in a fresh
interpreter (``python -m enclave.knowledge.sandbox``): the file goes in on stdin, the
sections come back as JSON on stdout. The child limits its own address space
(``RLIMIT_AS``, ``knowledge.ingest.max_memory_bytes``) and CPU time (``RLIMIT_CPU``, a
little over the timeout) before it imports a parser, and is killed past
``knowledge.ingest.timeout_s`` or when its ingestion is cancelled (:class:`Stopper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from enclave.errors import InvalidRequest
from enclave.knowledge.chunking import Section
from enclave.knowledge.documents import SETTING, Limits, extract

if TYPE_CHECKING:
    from asyncio.subprocess import Process

    from enclave.config import IngestSettings


class Stopped(Exception):
    """The ingestion was cancelled (its running parse, if any, was killed)."""


@dataclass
class Stopper:
    """Cancels an ingestion: between files and batches, and a parse that is running."""

    stopped: bool = False
    _children: set[Process] = field(default_factory=set)

    def stop(self) -> None:
        self.stopped = True
        for child in self._children:
            _kill(child)

    def check(self) -> None:
        if self.stopped:
            raise Stopped("cancelled")


def limits_of(settings: IngestSettings) -> Limits:
    return Limits(
        max_unpacked_bytes=int(settings.max_unpacked_bytes),
        max_compression_ratio=settings.max_compression_ratio,
        max_text_chars=settings.max_text_chars,
    )


async def extract_isolated(
    name: str, data: bytes, settings: IngestSettings, stopper: Stopper | None = None
) -> list[Section]:
    """The sections of ``name``, parsed in a child process; :class:`InvalidRequest`
    naming the file and the limit when it is over one, :class:`Stopped` if cancelled."""
    stopper = stopper or Stopper()
    stopper.check()
    limits = limits_of(settings)
    spec = {"name": name, "memory": int(settings.max_memory_bytes),
            "cpu": math.ceil(settings.timeout_s) + 5, **limits.__dict__}  # fmt: skip
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "enclave.knowledge.sandbox", json.dumps(spec),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stopper._children.add(child)
    try:
        out, err = await asyncio.wait_for(child.communicate(data), settings.timeout_s)
    except TimeoutError:
        raise InvalidRequest(
            f"{name}: parsing took longer than {settings.timeout_s:g} s ({SETTING}.timeout_s)"
        ) from None
    finally:
        stopper._children.discard(child)
        _kill(child)
        await child.wait()
    stopper.check()
    return _answer(name, child.returncode, out, err)


def _answer(name: str, code: int | None, out: bytes, err: bytes) -> list[Section]:
    try:
        answer = json.loads(out)
    except ValueError:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {code}"]
        raise InvalidRequest(
            f"{name}: the parser stopped ({last[0][:200]}); it may need more memory than "
            f"{SETTING}.max_memory_bytes allows"
        ) from None
    if "error" in answer:
        raise InvalidRequest(str(answer["error"]))
    return [Section(tuple(headings), text) for headings, text in answer["sections"]]


def _kill(child: Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            child.kill()


def _limit(memory: int, cpu: int) -> None:
    """Cap this process's address space, and its CPU seconds: should the parent die, the
    kernel still ends a parse that runs on."""
    try:
        import resource
    except ImportError:  # not POSIX: the parent's timeout still bounds the parse
        return
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))


def main() -> None:
    """The child: ``spec`` in argv, the file on stdin, JSON on stdout."""
    spec = json.loads(sys.argv[1])
    _limit(int(spec.pop("memory")), int(spec.pop("cpu")))
    name = str(spec.pop("name"))
    data = sys.stdin.buffer.read()
    try:
        sections = extract(name, data, Limits(**spec))
        answer: dict[str, object] = {"sections": [[list(s.headings), s.text] for s in sections]}
    except InvalidRequest as exc:
        answer = {"error": exc.message}
    sys.stdout.buffer.write(json.dumps(answer, ensure_ascii=False).encode())


if __name__ == "__main__":
    main()
