"""What every benchmark process shares: message bodies that carry their sequence number and send time, a timing
loop with a time budget, percentiles and medians, peak memory, and the description of the machine.

Standard library only: a measured process imports this and the one system it measures, nothing else."""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import statistics
import sys
import time
from typing import Iterable, Optional

HEADER_BYTES = 33
"""``%012d %.7f `` + padding: the sequence number and the send time (time.time()) open every body."""


def body(seq: int, size: int) -> bytes:
    """A ``size``-byte body: its sequence number and the current time, padded with ``x``."""
    return (b"%012d %.7f " % (seq, time.time())).ljust(size, b"x")


def bodies(n: int, size: int, start: int = 0) -> list[bytes]:
    return [body(i, size) for i in range(start, start + n)]


def parse(data: bytes | str) -> tuple[int, float]:
    """(sequence number, send time) of a body made by ``body``."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    seq, sent, _ = bytes(data[:HEADER_BYTES]).split(b" ", 2)
    return int(seq), float(sent)


class Budget:
    """Stops a timed loop once ``seconds`` have passed (checked every 8 iterations): ``if budget.over(i)``."""

    def __init__(self, seconds: float) -> None:
        self.stop = time.perf_counter() + seconds
        self.hit = False

    def over(self, i: int) -> bool:
        if i & 7 == 0 and i and time.perf_counter() > self.stop:
            self.hit = True
        return self.hit


def percentile(values: Iterable[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def peak_rss_mb() -> float:
    """The largest peak resident set of this process and of any child it waited for, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return max(own, children) / scale


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU seconds the processes ``pids`` of this machine have used so far (0 for one gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tcp_ports() -> list[int]:
    """The local ports of this process's open TCP sockets (Linux's /proc; none elsewhere)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports.append(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
