"""This machine, read from /proc: CPU time and memory of processes, how busy each CPU was,
pinning to CPUs, and the noise under any measurement (scheduling gaps, steal)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

TASKSET = shutil.which("taskset")


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_jiffies() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies of each CPU from /proc/stat, keyed by its number."""
    out: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            fields = [int(v) for v in values[:8]]
            idle = fields[3] + fields[4]
            out[name[3:]] = (sum(fields) - idle, sum(fields))
    return out


class CpuProbe:
    """CPU seconds of named processes, and how busy each CPU was, over a measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.marks: dict[str, tuple[float, dict[str, float]]] = {}
        self.jiffies: dict[str, dict[str, tuple[int, int]]] = {}

    def __call__(self, mark: str) -> None:
        self.marks[mark] = (time.perf_counter(), {k: cpu_seconds(p) for k, p in self.pids.items()})
        self.jiffies[mark] = cpu_jiffies()

    def cpu_busy(self) -> dict[str, float]:
        """Fraction of each CPU busy during the window, whoever used it."""
        if "start" not in self.jiffies or "end" not in self.jiffies:
            return {}
        a, b = self.jiffies["start"], self.jiffies["end"]
        return {c: (b[c][0] - a[c][0]) / max(b[c][1] - a[c][1], 1) for c in a if c in b}

    def usage(self) -> dict[str, float]:
        """Fraction of one CPU each process used during the window."""
        if "start" not in self.marks or "end" not in self.marks:
            return {}
        (t0, c0), (t1, c1) = self.marks["start"], self.marks["end"]
        return {k: (c1[k] - c0[k]) / (t1 - t0) for k in self.pids}

    def seconds(self) -> dict[str, float]:
        if "start" not in self.marks or "end" not in self.marks:
            return {}
        c0, c1 = self.marks["start"][1], self.marks["end"][1]
        return {k: c1[k] - c0[k] for k in self.pids}


def process_tree(pid: int) -> dict[int, list[str]]:
    """``pid`` and its live descendants, each with the fields of its /proc/PID/stat
    after the command name (Linux)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: dict[int, list[str]] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            tree[current] = stats[current]
            todo.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``, its live descendants and its waited-for dead children."""
    ticks = 0
    for member, fields in process_tree(pid).items():
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
        if member == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime + cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def pin_tree(pid: int, cpus: set[int]) -> None:
    """``pid`` and its descendants, every thread, on ``cpus`` (later children inherit)."""
    for member in process_tree(pid):
        pin_threads(member, cpus)


class TreeProbe(CpuProbe):
    """:class:`CpuProbe` where the processes named in ``trees`` count with descendants."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str]) -> None:
        super().__init__(pids)
        self.trees = trees

    def __call__(self, mark: str) -> None:
        seconds = {
            k: tree_cpu_seconds(p) if k in self.trees else cpu_seconds(p)
            for k, p in self.pids.items()
        }
        self.marks[mark] = (time.perf_counter(), seconds)
        self.jiffies[mark] = cpu_jiffies()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def choose_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The proxy's CPU and the load generator's + fake's CPU (None: no pinning)."""
    allowed = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(allowed) < 2:
        if len(allowed) < 2:
            print("warning: fewer than 2 CPUs, nothing pinned", file=sys.stderr)
        return None, None
    proxy = args.proxy_cpu if args.proxy_cpu is not None else allowed[0]
    load = args.load_cpu if args.load_cpu is not None else allowed[1]
    if proxy == load:
        raise SystemExit("--proxy-cpu and --load-cpu must differ")
    return proxy, load


GAPS = """
import sys, time
end = time.perf_counter() + float(sys.argv[1])
last, gaps = time.perf_counter(), []
while (now := time.perf_counter()) < end:
    if now - last > 2e-4:
        gaps.append(now - last)
    last = now
print(max(gaps, default=0.0), sum(1 for g in gaps if g > 1e-3))
"""


def scheduling_gaps(cpus: list[int], seconds: float) -> dict[str, dict[str, float]]:
    """A busy loop on each CPU at once: the longest time it was not run, and how often.

    On a virtual machine the hypervisor takes a CPU away for milliseconds at a time; that
    is the floor under any p99 measured here.
    """
    if not TASKSET:
        return {}
    procs = {
        cpu: subprocess.Popen(
            [TASKSET, "-c", str(cpu), sys.executable, "-c", GAPS, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for cpu in cpus
    }
    out: dict[str, dict[str, float]] = {}
    for cpu, proc in procs.items():
        longest, count = proc.communicate()[0].split()
        out[str(cpu)] = {"max_ms": float(longest) * 1e3, "over_1ms": int(count)}
    return out


def steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])
