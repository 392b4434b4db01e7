"""``python -m bench --profile WORKLOAD``: where one workload's time goes, so the next person starts from facts.

For one system (litemq's native API unless ``--systems`` names another: floor-1, litemq-pika, ...) and one
single-process workload (a: publish one at a time; b: publish 100 per batch; c: get + ack one at a time), on a fresh
store, it prints per operation:

- time: wall, and CPU split into user (the process's own code: the interpreter and SQLite's C) and system (the
  kernel: page writes, locks, syscalls); cProfile's split of the same loop between SQLite's C calls and Python; and,
  where ``perf`` runs, the share of CPU samples in each library (SQLite, the interpreter, the kernel, libc);
- SQL: the statements run (sqlite3's trace callback on every connection of the process, trigger programs counted
  apart), commits (COMMIT statements, and writes run outside a transaction, which commit by themselves), and WAL
  pages written (the -wal file's growth while a reader pins it, so that no checkpoint can restart it) and pages per
  commit;
- the functions that took the most time, by cProfile.

Nothing here is a target: it says where the time goes today.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any, Callable, Optional

from .measure import bodies
from .systems import QUEUE, Client, System, make

WORKLOADS = {"a": "publish, 1 per call", "b": "publish, 100 per batch", "c": "get + ack, 1 at a time"}
BATCH = 100
COUNTED_OPS = {"a": 200, "b": 5, "c": 200}
"""Operations whose statements and WAL pages are counted: few enough that the WAL stays small while pinned."""
TOP_FUNCTIONS = 12
PERF_FREQUENCY = 2000


# =============================================================================================================
# The operations
# =============================================================================================================

def operations(workload: str, client: Client, size: int) -> tuple[Callable[[], None], int]:
    """(one operation, messages per operation). A get workload's queue must hold enough messages (``fills``)."""
    if workload == "a":
        payload = bodies(1, size)[0]

        def publish() -> None:
            client.publish(payload)
        return publish, 1
    if workload == "b":
        batch = bodies(BATCH, size)

        def publish_batch() -> None:
            client.publish_batch(batch)
        return publish_batch, BATCH
    if workload == "c":
        def get_ack() -> None:
            message = client.get()
            if message is None:
                raise RuntimeError("the queue ran empty: fill it with more messages than operations")
            client.ack(message[1])
        return get_ack, 1
    raise ValueError(f"--profile takes one of {', '.join(WORKLOADS)}, not {workload!r}")


def fills(workload: str) -> bool:
    """Whether the workload takes messages from the queue, which must be filled first."""
    return workload == "c"


def fill(client: Client, count: int, size: int) -> None:
    for start in range(0, count, 10000):
        client.fill(bodies(min(10000, count - start), size, start))


# =============================================================================================================
# Counting statements and WAL pages
# =============================================================================================================

_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_LITERAL = re.compile(r"x'[0-9a-fA-F]*'|'(?:[^']|'')*'|\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b")


class StatementCounter:
    """Counts what every sqlite3 connection of this process runs between ``start`` and ``stop`` (sqlite3.connect is
    wrapped before the system opens its store; the trace callback is set only while counting, so the timed passes
    do not pay for it). A statement's trigger programs call the callback again with the same text: within one
    operation (``next_operation`` between them), a repeat of the text just traced on that connection counts as a
    trigger program."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.triggers = 0
        self.autocommits = 0  # writes run outside a transaction: each commits by itself
        self._connections: list[sqlite3.Connection] = []
        self._last: dict[int, str] = {}
        self._connect = sqlite3.connect

    def install(self) -> None:
        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            db = self._connect(*args, **kwargs)
            self._connections.append(db)
            return db
        sqlite3.connect = connect  # type: ignore[assignment]

    def uninstall(self) -> None:
        sqlite3.connect = self._connect
        self._connections.clear()

    def _traced(self, db: sqlite3.Connection, sql: str) -> None:
        key = id(db)
        if self._last.get(key) == sql:
            self.triggers += 1
            return
        self._last[key] = sql
        self.statements[" ".join(_LITERAL.sub("?", sql).split())[:110]] += 1
        if not db.in_transaction and _WRITE.match(sql):
            self.autocommits += 1

    def _set(self, tracing: bool) -> None:
        for db in self._connections:
            try:
                db.set_trace_callback((lambda sql, db=db: self._traced(db, sql)) if tracing else None)
            except sqlite3.ProgrammingError:
                pass  # closed

    def next_operation(self) -> None:
        self._last.clear()

    def start(self) -> None:
        self.statements.clear()
        self.triggers = 0
        self._last.clear()
        self._set(True)

    def stop(self) -> None:
        self._set(False)


def wal_frames(path: str, page_size: int) -> int:
    """Frames in the -wal file by its size (stat only: litemq's rule is never to open its files outside SQLite)."""
    try:
        size = os.stat(path + "-wal").st_size
    except FileNotFoundError:
        return 0
    return max(size - 32, 0) // (page_size + 24)


class WalPin:
    """A reader holding a snapshot: while it does, no checkpoint can complete, so the WAL is never restarted and its
    growth counts every page written. Before it starts, the WAL is checkpointed and truncated (when nobody else
    holds it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self.page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        for _ in range(50):
            if self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                break
            time.sleep(0.02)
        self.db.execute("BEGIN")
        self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def frames(self) -> int:
        return wal_frames(self.path, self.page_size)

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


# =============================================================================================================
# Where the time goes
# =============================================================================================================

def timed(op: Callable[[], None], n: int) -> dict[str, float]:
    before, t0 = os.times(), time.perf_counter()
    for _ in range(n):
        op()
    wall, after = time.perf_counter() - t0, os.times()
    return {"wall": wall, "user": after.user - before.user, "system": after.system - before.system}


def profiled(op: Callable[[], None], n: int) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        op()
    profiler.disable()
    return pstats.Stats(profiler)


def sqlite_share(stats: pstats.Stats) -> tuple[float, float]:
    """(seconds in sqlite3's C methods and functions, total seconds) of a cProfile run, by own time."""
    in_sqlite = total = 0.0
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += own
        if filename == "~" and "sqlite3" in name:
            in_sqlite += own
    return in_sqlite, total


def top_functions(stats: pstats.Stats, count: int) -> list[tuple[float, int, str]]:
    rows = []
    for (filename, line, name), (_, calls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = name if filename == "~" else f"{_short_path(filename)}:{line}({name})"
        rows.append((own, calls, where))
    return sorted(rows, reverse=True)[:count]


def _short_path(filename: str) -> str:
    parts = filename.replace(os.sep, "/").split("/")
    for anchor in ("litemq", "bench", "sqlite3"):
        if anchor in parts[:-1]:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor):])
    return parts[-1]


PERF_GROUPS = (("SQLite", ("libsqlite3", "_sqlite3")), ("interpreter", ("libpython", "python3")),
               ("kernel", ("[kernel", "[vdso]")), ("libc", ("libc.so", "libc-", "ld-linux", "libm.so")))


def perf_split(op: Callable[[], None], n: int) -> tuple[Optional[dict[str, float]], str]:
    """The share of this process's CPU samples in each library during ``n`` operations, by ``perf record``; or
    None and why not."""
    perf = shutil.which("perf")
    if perf is None:
        return None, "perf is not installed"
    with tempfile.TemporaryDirectory(prefix="litemq-profile-") as directory:
        data = os.path.join(directory, "perf.data")
        recorder = subprocess.Popen([perf, "record", "-q", "-e", "cpu-clock", "-F", str(PERF_FREQUENCY), "-p",
                                     str(os.getpid()), "-o", data], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # perf attaches
        if recorder.poll() is not None:
            return None, f"perf record failed: {recorder.stderr.read().strip()[-200:] if recorder.stderr else ''}"
        for _ in range(n):
            op()
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            return None, "perf record did not stop"
        report = subprocess.run([perf, "report", "-i", data, "--sort", "dso", "--stdio", "-q"],
                                capture_output=True, text=True, timeout=120)
    shares: dict[str, float] = {}
    for line in report.stdout.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S.*)$", line)
        if not match:
            continue
        dso, share = match.group(2).strip(), float(match.group(1))
        group = next((name for name, marks in PERF_GROUPS if any(mark in dso for mark in marks)), "other")
        shares[group] = shares.get(group, 0.0) + share
    if not shares:
        return None, f"perf report gave no samples ({report.stderr.strip()[-200:]})"
    return shares, ""


# =============================================================================================================
# The command
# =============================================================================================================

def run(workload: str, system_key: str, n: int, size: int) -> str:
    """Profile ``n`` operations of ``workload`` on ``system_key``; the report as text."""
    if workload not in WORKLOADS:
        raise ValueError(f"--profile takes one of {', '.join(WORKLOADS)}, not {workload!r}")
    system: System = make(system_key)
    if system.family not in ("floor", "litemq"):
        raise ValueError(f"--profile measures a system on an SQLite file (floor-1, litemq-native, litemq-pika, ...), "
                         f"not {system_key}")
    counter = StatementCounter()
    counter.install()
    directory = tempfile.mkdtemp(prefix="litemq-profile-")
    try:
        cfg = system.new_store(directory, {"size": size})
        client = system.client(cfg)
        if fills(workload):  # for every pass: warm-up, timed, cProfile, perf and counted
            fill(client, 50 + 3 * n + COUNTED_OPS[workload], size)
        op, messages = operations(workload, client, size)
        for _ in range(50):
            op()
        plain = timed(op, n)
        stats = profiled(op, n)
        split, perf_reason = perf_split(op, n)
        pin = WalPin(cfg["path"])
        try:
            frames_before = pin.frames()
            counter.start()
            counted = COUNTED_OPS[workload]
            for _ in range(counted):
                counter.next_operation()
                op()
            counter.stop()
            frames = pin.frames() - frames_before
        finally:
            pin.close()
        client.close()
    finally:
        counter.uninstall()
        shutil.rmtree(directory, ignore_errors=True)
    return report(workload, system, n, size, messages, plain, stats, split, perf_reason, counter, counted, frames)


def report(workload: str, system: System, n: int, size: int, messages: int, plain: dict[str, float],
           stats: pstats.Stats, split: Optional[dict[str, float]], perf_reason: str, counter: StatementCounter,
           counted: int, frames: int) -> str:
    us = 1e6 / n
    cpu = plain["user"] + plain["system"]
    in_sqlite, profiled_total = sqlite_share(stats)
    statements = sum(counter.statements.values())
    commits = counter.autocommits + sum(count for sql, count in counter.statements.items()
                                        if sql.upper().startswith(("COMMIT", "END")))
    per_message = f" ({messages} messages each)" if messages > 1 else ""
    lines = [
        f"profile: {workload} ({WORKLOADS[workload]}) on {system.label}: {n:,} operations{per_message}, "
        f"{size}-byte bodies; load average {os.getloadavg()[0]:.2f}",
        "",
        "time per operation",
        f"  wall {plain['wall'] * us:9.1f} us   ({n / plain['wall']:,.0f} operations/s)",
        f"  CPU  {cpu * us:9.1f} us = user {plain['user'] * us:.1f} us (interpreter and SQLite) + system "
        f"{plain['system'] * us:.1f} us (kernel)",
        f"  cProfile, same loop: SQLite's C calls {100 * in_sqlite / profiled_total:.0f} %, Python "
        f"{100 * (1 - in_sqlite / profiled_total):.0f} % of the profiled time ({profiled_total * us:.1f} us per "
        f"operation; cProfile slows Python, so Python's real share is smaller)",
    ]
    if split is None:
        lines.append(f"  perf: not measured: {perf_reason}")
    else:
        shares = ", ".join(f"{name} {split[name]:.1f} %" for name in ("SQLite", "interpreter", "kernel", "libc",
                                                                     "other") if name in split)
        lines.append(f"  perf, CPU samples by library: {shares}")
    lines += [
        "",
        f"SQL per operation ({counted} operations counted)",
        f"  statements {statements / counted:.2f}, trigger programs {counter.triggers / counted:.2f}, "
        f"commits {commits / counted:.2f}",
        f"  WAL pages written {frames / counted:.2f}" + (f", per commit {frames / commits:.2f}" if commits else ""),
        "  statements run:",
    ]
    for sql, count in counter.statements.most_common():
        lines.append(f"    {count / counted:6.2f}  {sql}")
    lines += ["", f"top {TOP_FUNCTIONS} functions by own time (cProfile, per operation)"]
    for own, calls, where in top_functions(stats, TOP_FUNCTIONS):
        lines.append(f"  {own * us:8.2f} us  {calls / n:5.1f} calls  {where}")
    return "\n".join(lines)


def main(workload: str, system_key: Optional[str], n: int, size: int) -> int:
    try:
        print(run(workload, system_key or "litemq-native", n, size))
    except ValueError as exc:
        print(f"python -m bench --profile: {exc}", file=sys.stderr)
        return 2
    return 0
