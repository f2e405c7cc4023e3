"""Air-gap checks: run a command in a network namespace with only loopback, under strace.

``netns_argv`` wraps a command so that it runs inside ``unshare -n`` (a new network
namespace whose only interface is ``lo``, brought up first) and, when ``trace`` is
given, under ``strace -f`` recording every ``connect``, ``sendto`` and ``sendmsg`` of
every process and thread it starts. ``egress`` reads such a trace and returns each
attempt to reach anything but loopback or a local socket: another host, any DNS query
(port 53, loopback resolvers included), or an address family that is not local.

In the namespace such an attempt fails at once (no route), so a test proves two
things: the stack works with no network at all, and it never even tried to reach one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

TRACED = "connect,sendto,sendmsg"
# What ``lineage=True`` traces as well: which process started which, and what each runs.
LINEAGE = "clone,clone3,fork,vfork,execve"
SELF_EXE = "/proc/self/exe"  # how Chromium (among others) re-executes itself
LOCAL_FAMILIES = frozenset({"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"})
DNS_PORT = 53

_SOCKADDR = re.compile(r"\{sa_family=(AF_\w+)(.*?)\}")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_V4 = re.compile(r'inet_addr\("([^"]+)"\)')
_V6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_CALL = re.compile(r"\b(connect|sendto|sendmsg)\(")
_SPAWN = re.compile(r"^(\d+) +(?:<\.\.\. )?(?:clone3?|v?fork)\b.*\) += (\d+)$")
_EXEC = re.compile(r'^(\d+) +execve\("([^"]*)"')
_EXEC_DONE = re.compile(r"^(\d+) +(?:<\.\.\. execve resumed>|execve\().*\) += 0$")


def unavailable() -> str | None:
    """Why the air-gap checks cannot run here (``None`` when they can)."""
    if os.geteuid() != 0:
        return "unshare -n needs root"
    missing = [tool for tool in ("unshare", "strace", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing: {', '.join(missing)} (apt-get install util-linux strace iproute2)"
    return None


def netns_argv(
    argv: Sequence[str], *, trace: Path | None = None, lineage: bool = False
) -> list[str]:
    """``argv`` run in a new network namespace with only ``lo`` (up), optionally traced
    into the file ``trace`` (``strace -f``: every child process and thread too); with
    ``lineage`` the trace also records every clone/fork and execve, for :func:`programs`."""
    inner = list(argv)
    traced = f"{TRACED},{LINEAGE}" if lineage else TRACED
    if trace is not None:
        inner = [
            "strace",
            "-f",
            "-qq",
            "-s",
            "0",
            "-e",
            "signal=none",
            "-e",
            f"trace={traced}",
            "-o",
            str(trace),
            *inner,
        ]
    script = f"ip link set lo up && exec {shlex.join(inner)}"
    return ["unshare", "--net", "--", "sh", "-c", script]


def egress(trace: Path) -> list[str]:
    """The traced calls that tried to reach beyond this host (or asked DNS)."""
    found: list[str] = []
    for line in trace.read_text(encoding="utf-8", errors="replace").splitlines():
        if _CALL.search(line) and any(
            _outside(family, rest) for family, rest in _SOCKADDR.findall(line)
        ):
            found.append(line.strip())
    return found


def programs(trace: Path) -> dict[int, str]:
    """Each thread id in a ``lineage`` trace with the program it runs: the last program it
    executed, else its parent's (a thread or forked child runs its parent's code). An exec
    of ``/proc/self/exe`` runs the program the thread ran before it."""
    parents: dict[int, int] = {}
    ran: dict[int, str] = {}
    pending: dict[int, str] = {}  # an execve whose result is on a later line
    for line in trace.read_text(encoding="utf-8", errors="replace").splitlines():
        if spawn := _SPAWN.match(line):
            parents[int(spawn.group(2))] = int(spawn.group(1))
            continue
        if started := _EXEC.match(line):
            pending[int(started.group(1))] = started.group(2)
        if (done := _EXEC_DONE.match(line)) and (tid := int(done.group(1))) in pending:
            path = pending.pop(tid)
            now = _program(tid, parents, ran) if path == SELF_EXE else path
            if now is not None:
                ran[tid] = now
    found = {tid: _program(tid, parents, ran) for tid in {*parents, *ran}}
    return {tid: program for tid, program in found.items() if program is not None}


def _program(tid: int, parents: dict[int, int], ran: dict[int, str]) -> str | None:
    seen: set[int] = set()
    while tid not in ran and tid in parents and tid not in seen:
        seen.add(tid)
        tid = parents[tid]
    return ran.get(tid)


def _outside(family: str, rest: str) -> bool:
    if family in LOCAL_FAMILIES:
        return False
    if family not in ("AF_INET", "AF_INET6"):
        return True  # a raw, packet or other family: never needed here
    port = _PORT.search(rest)
    if port is not None and int(port.group(1)) == DNS_PORT:
        return True  # a DNS query, even to a loopback resolver, asks about the outside
    address = _V4.search(rest) or _V6.search(rest)
    return address is None or not _loopback(address.group(1))


def _loopback(address: str) -> bool:
    if address.startswith("::ffff:"):
        address = address.removeprefix("::ffff:")
    return address.startswith("127.") or address == "::1"
