"""The egress detector of the air-gap proof (tests/netns.py) can fail: real attempts to
reach beyond the host, made by a real process in the namespace under strace, are caught
(a TCP connect to a 10.x address, a DNS lookup, a UDP datagram), while loopback and local
sockets pass. The parsing is also checked on strace lines written by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.airgap.session import namespace_refused
from tests.netns import egress, netns_argv, programs

pytestmark = pytest.mark.airgap

LOCAL = """
import socket, tempfile, os
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
socket.create_connection(server.getsockname()).close()
six = socket.socket(socket.AF_INET6); six.bind(("::1", 0)); six.listen()
socket.create_connection(six.getsockname()[:2]).close()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.sendto(b"x", ("127.0.0.1", 9))
path = os.path.join(tempfile.mkdtemp(), "s")
unix = socket.socket(socket.AF_UNIX); unix.bind(path); unix.listen()
socket.socket(socket.AF_UNIX).connect(path)
"""
ATTEMPTS = {
    "tcp": "import socket; socket.socket().connect_ex(('10.1.2.3', 443))",
    "dns": "import socket\ntry: socket.getaddrinfo('example.com', 443)\nexcept OSError: pass",
    "udp": (
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try: s.sendto(b'x', ('192.0.2.7', 9))\nexcept OSError: pass"
    ),
}


def traced(tmp_path: Path, code: str) -> list[str]:
    why = namespace_refused()
    if why is not None:
        pytest.skip(why)
    trace = tmp_path / "trace"
    done = subprocess.run(netns_argv([sys.executable, "-c", code], trace=trace),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return egress(trace)


def test_loopback_and_local_sockets_pass(tmp_path: Path) -> None:
    assert traced(tmp_path, LOCAL) == []


@pytest.mark.parametrize("kind", list(ATTEMPTS))
def test_a_real_attempt_is_caught(tmp_path: Path, kind: str) -> None:
    found = traced(tmp_path, ATTEMPTS[kind])
    assert found, f"the {kind} attempt was not seen"
    expected = {"tcp": "10.1.2.3", "dns": "htons(53)", "udp": "192.0.2.7"}[kind]
    assert all(expected in line for line in found), found


def v4(call: str, port: int, address: str) -> str:
    where = f'sin_port=htons({port}), sin_addr=inet_addr("{address}")'
    return f"7 {call}(3, {{sa_family=AF_INET, {where}}}, 16) = 0"


def v6(port: int, address: str, end: str = ") = 0") -> str:
    return (
        f"7 connect(3, {{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl(0), "
        f'inet_pton(AF_INET6, "{address}", &sin6_addr), sin6_scope_id=0}}, 28{end}'
    )


@pytest.mark.parametrize(
    "line",
    [
        v4("connect", 8000, "127.0.0.1"),
        v6(80, "::1"),
        v6(80, "::ffff:127.0.0.1"),
        '7 connect(3, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 110) = 0',
        "7 sendto(3, ..., 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20",
        "7 sendto(3, ..., 5, 0, NULL, 0) = 5",
    ],
)
def test_local_lines_pass(tmp_path: Path, line: str) -> None:
    (tmp_path / "trace").write_text(line + "\n")
    assert egress(tmp_path / "trace") == []


@pytest.mark.parametrize(
    "line",
    [
        v4("connect", 443, "10.0.0.5"),
        v4("connect", 53, "127.0.0.53"),  # DNS, even to a loopback resolver
        v4("sendto", 53, "127.0.0.1"),
        v6(443, "2001:db8::1", " <unfinished ...>"),
        "7 sendmsg(3, {msg_name={sa_family=AF_INET, sin_port=htons(123), "
        'sin_addr=inet_addr("192.0.2.1")}, msg_namelen=16}, 0) = 48',
        "7 sendto(3, ..., 42, 0, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 42",
    ],
)
def test_outside_lines_are_caught(tmp_path: Path, line: str) -> None:
    (tmp_path / "trace").write_text(line + "\n")
    assert egress(tmp_path / "trace") == [line]


LINEAGE = """
import os, subprocess, sys, threading
threading.Thread(target=lambda: None).start()
subprocess.run(["/bin/true"], check=True)
subprocess.run(["/bin/sh", "-c", "/bin/true & wait"], check=True)
print(os.getpid(), flush=True)
"""


def test_the_lineage_names_each_threads_program(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    argv = netns_argv([sys.executable, "-c", LINEAGE], trace=trace, lineage=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    ran = programs(trace)
    python = int(done.stdout.split()[-1])
    assert Path(ran[python]).name.startswith("python")
    names = sorted(Path(program).name for program in ran.values())
    assert names.count("true") == 2  # the one run directly and the one forked by sh
    assert "sh" in names or "dash" in names
    threads = [tid for tid, program in ran.items() if program == ran[python] and tid != python]
    assert threads  # the thread (and the forks before their execve) run python too


def test_the_lineage_is_read_from_split_lines(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.write_text(
        '10 execve("/usr/lib/chromium/chromium", [...], 0x1 /* 3 vars */) = 0\n'
        "10 clone3({flags=CLONE_VM} <unfinished ...>\n"
        '11 execve("/proc/self/exe", [...], 0x1 /* 3 vars */ <unfinished ...>\n'
        "10 <... clone3 resumed> => {parent_tid=[11]}, 88) = 11\n"
        "11 <... execve resumed>)             = 0\n"
        "11 clone(child_stack=NULL, flags=SIGCHLD) = 12\n"
        '12 execve("/usr/bin/xdg-open", [...], 0x1 /* 3 vars */) = 0\n'
        '12 execve("/nowhere", [...], 0x1 /* 3 vars */) = -1 ENOENT (No such file)\n'
        "11 vfork( <unfinished ...>\n"
        "11 <... vfork resumed>)              = 13\n"
    )
    assert programs(trace) == {
        10: "/usr/lib/chromium/chromium", 11: "/usr/lib/chromium/chromium",
        12: "/usr/bin/xdg-open", 13: "/usr/lib/chromium/chromium",
    }  # fmt: skip
