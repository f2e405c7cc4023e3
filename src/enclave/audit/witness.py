"""The witness: the chain's signed head, written outside the database as it moves.

The head in ``audit_head`` proves that no record at the end was deleted, but only as
long as the database still holds it: someone who can write the database can delete
every row, or delete the newest records and put back an older, genuinely signed head.
So the writer also appends each new head to a witness the database cannot rewrite:

- ``file`` (default): one JSON line per head, appended (``O_APPEND``) to
  ``audit.witness_file`` (default ``home/witness/audit.witness``; the directory is
  created 0700, the file 0600), each line ``fsync``'d before the next is written;
- ``syslog``: the same line, after :data:`MARKER`, to syslog (facility ``authpriv``,
  tag ``enclave-audit``): the local ``/dev/log`` (journald, rsyslog) or ``HOST:PORT``
  over UDP, which can forward it to another host;
- ``both``, or ``off``.

A line: ``{"seq", "hash", "time", "key", "sig", "by"}``: the head's seq and hash, when
it was witnessed, the id of the key that signed it (:func:`key_id`), the head's
signature, and the host and process that wrote it (every gateway replica writes its own
lines). At most one line per ``audit.witness_interval_s`` (the newest head; 0: after
every commit), plus one when the writer closes. ``enclave audit verify`` reads the
lines back (:func:`sightings`) and checks the chain against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Any, Protocol

from enclave.audit.chain import Head, head_is_genuine, iso_utc
from enclave.config import Settings
from enclave.errors import ConfigError

log = logging.getLogger("enclave.audit")

MARKER = "enclave-audit-witness "  # what precedes the JSON in a syslog message
SYSLOG_TAG = "enclave-audit"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def key_id(key: bytes) -> str:
    """A short public name of a signing key (it reveals nothing of the key)."""
    return hashlib.sha256(b"enclave-audit-key-id\n" + key).hexdigest()[:16]


def witness_file(settings: Settings) -> Path:
    """``audit.witness_file``, or ``home/witness/audit.witness``."""
    return settings.audit.witness_file or settings.home / "witness" / "audit.witness"


def files_to_check(settings: Settings, given: list[Path] | None) -> list[Path] | None:
    """What ``verify`` reads: the files ``given``, else ``audit.witness_file`` if the
    witness writes one; ``[]`` if it writes only to syslog; None if it is off."""
    if given:
        return given
    mode = settings.audit.witness
    if mode == "off":
        return None
    return [witness_file(settings)] if mode in ("file", "both") else []


def witness_line(head: Head, key: bytes, at: datetime, extra: Mapping[str, Any] | None) -> str:
    data = {
        "seq": head.seq,
        "hash": head.hash,
        "time": iso_utc(at),
        "key": key_id(key),
        "sig": head.signature,
        "by": f"{socket.gethostname()}:{os.getpid()}",
        **(extra or {}),
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# -- where lines go --------------------------------------------------------------------


class Sink(Protocol):
    def write(self, line: str) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """An append-only file: one ``write`` per line on an ``O_APPEND`` descriptor, then
    ``fsync``. Several processes may append to the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = _open_append(path)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the audit witness {path} (audit.witness_file): {exc.strerror}"
            ) from exc

    def write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def _open_append(path: Path) -> int:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, 0o600)  # whatever the umask
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new file's name survives a crash
    finally:
        os.close(dir_fd)
    return fd


class _SysLog(SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            raise error


class SyslogSink:
    """Syslog: a local socket (``/dev/log``) or ``HOST:PORT`` over UDP."""

    def __init__(self, address: str) -> None:
        target: str | tuple[str, int] = address
        host, _, port = address.rpartition(":")
        if not address.startswith("/") and host and port.isdigit():
            target = (host, int(port))
        elif not Path(address).exists():  # SysLogHandler would say nothing until a write
            raise ConfigError(f"no syslog socket at {address} (audit.witness_syslog)")
        try:
            self._handler = _SysLog(address=target, facility=SysLogHandler.LOG_AUTHPRIV)
        except OSError as exc:
            raise ConfigError(
                f"cannot reach syslog at {address} (audit.witness_syslog): {exc.strerror or exc}"
            ) from exc
        self._handler.ident = f"{SYSLOG_TAG}: "

    def write(self, line: str) -> None:
        record = logging.LogRecord(
            "enclave.audit.witness", logging.INFO, __file__, 0, MARKER + line, None, None
        )
        self._handler.emit(record)

    def close(self) -> None:
        self._handler.close()


def open_witness(settings: Settings, key: bytes) -> Witness | None:
    """The witness ``audit.witness`` asks for (None: off); ConfigError if unusable."""
    sinks = _sinks(settings)
    return Witness(sinks, key, settings.audit.witness_interval_s) if sinks else None


def check_witness(settings: Settings) -> None:
    """Open and close the witness: ConfigError, before a gateway starts, if unusable."""
    if settings.audit.enabled:
        for sink in _sinks(settings):
            sink.close()


def _sinks(settings: Settings) -> list[Sink]:
    mode = settings.audit.witness
    sinks: list[Sink] = []
    if mode in ("file", "both"):
        sinks.append(FileSink(witness_file(settings)))
    if mode in ("syslog", "both"):
        try:
            sinks.append(SyslogSink(settings.audit.witness_syslog))
        except ConfigError:
            for sink in sinks:
                sink.close()
            raise
    return sinks


# -- writing ---------------------------------------------------------------------------


class Witness:
    """Writes the newest head :meth:`note` was given, at most once per ``interval_s``.

    ``note`` is cheap and never blocks (the writer calls it after each commit); a task
    writes the line in a worker thread. A failure is logged (once until it recovers)
    and counted in ``failed``; it does not fail the audit write.
    """

    def __init__(
        self,
        sinks: list[Sink],
        key: bytes,
        interval_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks = sinks
        self.key = key
        self.interval_s = interval_s
        self.written = 0  # lines written
        self.failed = 0  # lines that could not be written to some sink
        self._clock = clock
        self._last = -math.inf
        self._pending: tuple[Head, Mapping[str, Any] | None] | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def note(self, head: Head, extra: Mapping[str, Any] | None = None) -> None:
        """Witness ``head`` (and ``extra`` fields) soon; a newer head replaces an older
        one not yet written."""
        if head.seq <= 0 or self._stop.is_set():
            return
        if self._pending is None or head.seq >= self._pending[0].seq:
            self._pending = (head, extra)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-witness")
        self._wake.set()

    async def aclose(self) -> None:
        """Write what is pending, then close the sinks."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
        for sink in self.sinks:
            with contextlib.suppress(OSError):
                sink.close()

    async def flush(self) -> None:
        """Write the pending head now."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self._last = self._clock()
        line = witness_line(pending[0], self.key, datetime.now(UTC), pending[1])
        errors = await asyncio.to_thread(self._write, line)
        if errors:
            self.failed += 1
            if not self._failing:
                log.error("audit witness: %s; the chain is not anchored meanwhile", errors[0])
            self._failing = True
            return
        self.written += 1
        if self._failing:
            log.warning("audit witness: written again (seq %d)", pending[0].seq)
        self._failing = False

    def _write(self, line: str) -> list[str]:
        errors = []
        for sink in self.sinks:
            try:
                sink.write(line)
            except OSError as exc:
                errors.append(f"cannot write to {getattr(sink, 'path', 'syslog')}: {exc}")
        return errors

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            delay = self._last + self.interval_s - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            await self.flush()


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sighting:
    """One witness line: the witness saw record ``seq`` with ``hash`` at ``time``."""

    seq: int
    hash: str
    time: str
    key: str  # key_id() of the key that signed the head
    sig: str
    source: str
    line: int

    def where(self) -> str:
        return f"witness line {self.line} of {self.source}"

    def genuine(self, key: bytes) -> bool:
        return head_is_genuine(key, Head(self.seq, self.hash, self.sig))


class WitnessUnreadable(ValueError):
    """A line of a witness file is not a witness line."""


def sightings(path: Path, size: int) -> Iterator[Sighting]:
    """The lines of ``path`` within its first ``size`` bytes (an incomplete last line is
    skipped: it was being written). Lines from syslog may carry a prefix before
    :data:`MARKER`; raises :class:`WitnessUnreadable` naming a line that is not one."""
    read = 0
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            read += len(raw)
            if read > size or not raw.endswith(b"\n"):
                return
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                yield _parse(text, str(path), number)


def _parse(text: str, source: str, number: int) -> Sighting:
    _, marker, rest = text.partition(MARKER)
    try:
        data = json.loads(rest if marker else text)
        sighting = Sighting(
            int(data["seq"]), str(data["hash"]), str(data["time"]), str(data["key"]),
            str(data["sig"]), source, number,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        raise WitnessUnreadable(f"witness line {number} of {source}: not a witness line") from None
    if sighting.seq < 1 or not _HEX64.fullmatch(sighting.hash):
        raise WitnessUnreadable(f"witness line {number} of {source}: not a witness line")
    return sighting
