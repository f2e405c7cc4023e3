"""The server's resources during a load test, when the server runs on this machine.

The process is the one listening on the endpoint's port (or ``--server-pid``); its memory
(RSS) and CPU are summed with its children's (a gateway's engine child, vLLM's workers)
with psutil — the ``bench`` extra. GPU memory in use comes from ``nvidia-smi`` when it
is on the PATH. Sampling runs in a worker thread so that it never delays the load.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from enclave.bench.metrics import SystemSample

if TYPE_CHECKING:
    import psutil

MB = 1024 * 1024
NVIDIA_SMI_TIMEOUT_S = 5.0


def is_local(host: str) -> bool:
    """Whether ``host`` is this machine: loopback, or one of its interfaces' addresses."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return True
    try:
        import psutil
    except ImportError:
        return False
    mine = {a.address for nic in psutil.net_if_addrs().values() for a in nic}
    return bool(addresses & mine)


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` here (None if unknown or not visible)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def gpu_memory_mb() -> float | None:
    """GPU memory in use over all GPUs (MiB), from nvidia-smi; None without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True,
        ).stdout  # fmt: skip
        return sum(float(line) for line in out.split() if line.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


class SystemMonitor:
    """Samples one process tree (psutil) and the GPUs (nvidia-smi)."""

    def __init__(self, pid: int | None, *, gpu: bool = True) -> None:
        self.pid = pid
        self.gpu = gpu and shutil.which("nvidia-smi") is not None
        self._procs: dict[int, psutil.Process] = {}

    @classmethod
    def for_endpoint(cls, host: str, port: int, pid: int | None = None) -> SystemMonitor | None:
        """A monitor when the server is local (psutil needed), else None."""
        try:
            import psutil  # noqa: F401
        except ImportError:
            return None
        if pid is None:
            if not is_local(host):
                return None
            pid = listening_pid(port)
        return cls(pid)

    def describe(self) -> dict[str, Any]:
        return {"pid": self.pid, "gpu": self.gpu}

    def _tree(self) -> list[psutil.Process]:
        import psutil

        if self.pid is None:
            return []
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        tree = []
        for proc in procs:
            known = self._procs.setdefault(proc.pid, proc)  # keeps cpu_percent's state
            tree.append(known)
        return tree

    def sample(self, t: float) -> SystemSample:
        """One sample (blocking: run it in a thread)."""
        import psutil

        rss = cpu = 0.0
        seen = False
        for proc in self._tree():
            try:
                rss += proc.memory_info().rss / MB
                cpu += proc.cpu_percent(interval=None)
                seen = True
            except psutil.Error:
                continue
        gpu = gpu_memory_mb() if self.gpu else None
        return SystemSample(t, rss if seen else None, cpu if seen else None, gpu)

    async def run(self, started: float, interval_s: float, into: list[SystemSample]) -> None:
        """Sample every ``interval_s`` until cancelled; ``t`` is from ``started``."""
        first = await asyncio.to_thread(self.sample, time.perf_counter() - started)
        into.append(replace(first, cpu_percent=None))  # cpu_percent's first call says 0
        while True:
            await asyncio.sleep(interval_s)
            t = time.perf_counter() - started
            into.append(await asyncio.to_thread(self.sample, t))
