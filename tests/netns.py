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
LOCAL_FAMILIES = frozenset({"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"})
DNS_PORT = 53

_SOCKADDR = re.compile(r"\{sa_family=(AF_\w+)(.*?)\}")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_V4 = re.compile(r'inet_addr\("([^"]+)"\)')
_V6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_CALL = re.compile(r"\b(connect|sendto|sendmsg)\(")


def unavailable() -> str | None:
    """Why the air-gap checks cannot run here (``None`` when they can)."""
    if os.geteuid() != 0:
        return "unshare -n needs root"
    missing = [tool for tool in ("unshare", "strace", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing: {', '.join(missing)} (apt-get install util-linux strace iproute2)"
    return None


def netns_argv(argv: Sequence[str], *, trace: Path | None = None) -> list[str]:
    """``argv`` run in a new network namespace with only ``lo`` (up), optionally traced
    into the file ``trace`` (``strace -f``: every child process and thread too)."""
    inner = list(argv)
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
            f"trace={TRACED}",
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
