"""``python -m bench --brk``: allocator churn, counted. Every row's processes run under ``strace -f -c -e
trace=brk``, and a row of a workload that makes many operations in one process (a, b, c, d) churns when it makes
more than ``MAX_BRK_PER_MESSAGE`` brk calls per message.

Why: statements that keep a statement journal or a temporary structure (an ``id IN (SELECT ... LIMIT ?)`` with
SQLite's temp store on file) had glibc hand memory back at the top of the heap and fault it in again at every
operation in some processes: about 100,000 brk calls for 20,000 publishes and 20,000 get+acks, against about 90 in
a normal process, and get+ack at half its speed. Whether a process churns depends on the state of its heap, so the
check runs the table's own row processes (a copy of a store filled by another process, the row's imports), not a
stand-in: a stand-in process doing the same get+acks did not churn where the row did (0.03 against 0.66 per
message). A normal row makes a process's ~90 brk calls whatever its length (0.02 per message at n=5,000); a
churning one several tenths per message.
"""

from __future__ import annotations

import re
import shutil
from typing import Any, Optional

MAX_BRK_PER_MESSAGE = 0.1
CHECKED = ("a", "b", "c", "d")
"""Workloads whose row is one process making many operations: the others start processes per message (j) or move
large bodies (k, where glibc's growing mmap threshold makes brk calls legitimately)."""
DEFAULT_WORKLOADS = "a,c"
DEFAULT_SYSTEMS = "litemq"


def strace_missing() -> Optional[str]:
    """Why brk calls cannot be counted here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (Debian: apt-get install strace)"
    return None


def traced(command: list[str], summary_path: str) -> list[str]:
    """``command`` under strace, counting the brk calls of it and every process it starts into ``summary_path``."""
    return ["strace", "-f", "-c", "-e", "trace=brk", "-o", summary_path, *command]


def brk_calls(summary: str) -> int:
    """The brk calls in a ``strace -c`` summary (0 when there were none: strace then prints no row)."""
    match = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+brk\s*$", summary, re.MULTILINE)
    return int(match.group(1)) if match else 0


def messages(result: dict[str, Any]) -> int:
    """Messages a row moved in all its runs."""
    return sum(run.get("n", 0) for run in result.get("runs", [])) or result.get("n", 0)


def churns(row: dict[str, Any]) -> bool:
    return (row["workload"] in CHECKED and row.get("brk_per_message") is not None
            and row["brk_per_message"] > MAX_BRK_PER_MESSAGE)


def verdict(rows: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """Lines for the end of the table, and whether any checked row churned."""
    lines = [f"brk calls per message (strace; churn above {MAX_BRK_PER_MESSAGE} in rows {', '.join(CHECKED)}):"]
    churned = False
    for row in rows:
        if row.get("brk_per_message") is None:
            continue
        churned = churned or churns(row)
        lines.append(f"  {row['workload']:9} {row['system']:22} {row['brk_per_message']:8.3f}   "
                     f"({row['brk_calls']:,} calls, {row['brk_messages']:,} messages)"
                     + ("   CHURN" if churns(row) else ""))
    return lines, churned
