"""The SQLite hot path: litemq beside raw stdlib sqlite3 running the minimal SQL of a queue, on this machine.

    python bench/hot_path.py [--n 20000] [--sync NORMAL|FULL] [--runs 3] [--opens 7]

Measured, each on a fresh temporary file, median of ``--runs``:

- publish: ``n`` publishes, one per call (litemq: default exchange to a durable queue; raw: INSERT + commit);
- get + ack: ``n`` times get one message and ack it (litemq: ``conn.get`` then ``delivery.ack()``; raw: the claim
  ``UPDATE ... WHERE id = (SELECT ... ORDER BY id LIMIT 1) RETURNING`` + commit, then DELETE + commit);
- open: ``import litemq`` and opening a current file in a fresh Python process (raw: ``import sqlite3``, connect,
  the same pragmas and one query of the table), timed inside the child, and the child's whole wall time.

The raw side is the reference floor's SQL (shared bench_sqlite_floor.py, "1 msg per commit"), statement for
statement: WAL, the chosen synchronous setting, a 100-byte body, one message per commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if (REPO / "litemq" / "__init__.py").is_file() and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout: measure this checkout's litemq

import litemq  # noqa: E402

BODY_BYTES = 100
QUEUE = "bench"

# --- the raw floor: the same SQL as the shared reference floor (bench_sqlite_floor.py), batch of 1
RAW_Q = "q"
RAW_LEASE = 30.0
RAW_DDL = ("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, queue TEXT, "
           "body BLOB, lease_until REAL)")
RAW_INSERT = "INSERT INTO messages (queue, body, lease_until) VALUES (?, ?, NULL)"
RAW_CLAIM1 = ("UPDATE messages SET lease_until = ? WHERE id = (SELECT id FROM messages "
              "WHERE queue = ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT 1) "
              "RETURNING id, body")
RAW_DELETE = "DELETE FROM messages WHERE id = ?"


def raw_connect(path: str, sync: str) -> sqlite3.Connection:
    c = sqlite3.connect(path, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    return c


def bodies(n: int) -> list[bytes]:
    return [(b"%012d " % i).ljust(BODY_BYTES, b"x") for i in range(n)]


# --- one run of each side: (publish msgs/s, get+ack msgs/s)

def litemq_run(directory: str, n: int, sync: str) -> tuple[float, float]:
    path = os.path.join(directory, "litemq.db")
    payloads = bodies(n)
    with litemq.connect(path, synchronous=sync) as conn:  # the first open creates the schema: not timed
        conn.declare_queue(QUEUE, durable=True)
    conn = litemq.connect(path, synchronous=sync)
    try:
        return time_native_api(conn, payloads, "litemq")
    finally:
        conn.close()


def time_native_api(conn: litemq.Connection, payloads: list[bytes], label: str) -> tuple[float, float]:
    """Publish the payloads one per call, then get + ack each: (publish msgs/s, get+ack msgs/s)."""
    n = len(payloads)
    publish = conn.publish
    t0 = time.perf_counter()
    for body in payloads:
        publish("", QUEUE, body)
    t1 = time.perf_counter()
    get = conn.get
    for i in range(n):
        delivery = get(QUEUE)
        if delivery is None:
            raise RuntimeError(f"{label}: queue empty after {i} of {n} gets")
        delivery.ack()
    t2 = time.perf_counter()
    if conn.get(QUEUE) is not None:
        raise RuntimeError(f"{label}: messages left after consuming all")
    return n / (t1 - t0), n / (t2 - t1)


def raw_run(directory: str, n: int, sync: str) -> tuple[float, float]:
    path = os.path.join(directory, "raw.db")
    payloads = bodies(n)
    c = raw_connect(path, sync)
    c.execute(RAW_DDL)
    c.commit()
    t0 = time.perf_counter()
    for body in payloads:
        c.execute(RAW_INSERT, (RAW_Q, body))
        c.commit()
    t1 = time.perf_counter()
    for i in range(n):
        now = time.time()
        row = c.execute(RAW_CLAIM1, (now + RAW_LEASE, RAW_Q, now)).fetchone()
        c.commit()
        if row is None:
            raise RuntimeError(f"raw: queue empty after {i} of {n} claims")
        c.execute(RAW_DELETE, (row[0],))
        c.commit()
    t2 = time.perf_counter()
    left = c.execute("SELECT count(*) FROM messages").fetchone()[0]
    c.close()
    if left:
        raise RuntimeError(f"raw: {left} messages left after consuming all")
    return n / (t1 - t0), n / (t2 - t1)


# --- opening a current file in a fresh process

LITEMQ_OPEN = """
import json, sys, time
t0 = time.perf_counter()
import litemq
conn = litemq.connect(sys.argv[1], synchronous=sys.argv[2])
t1 = time.perf_counter()
conn.close()
print(json.dumps({"ms": (t1 - t0) * 1000, "sqlalchemy": "sqlalchemy" in sys.modules}))
"""

RAW_OPEN = """
import json, sys, time
t0 = time.perf_counter()
import sqlite3
c = sqlite3.connect(sys.argv[1], timeout=30)
c.execute("PRAGMA journal_mode=WAL")
c.execute(f"PRAGMA synchronous={sys.argv[2]}")
c.execute("SELECT id FROM messages LIMIT 1").fetchall()
t1 = time.perf_counter()
c.close()
print(json.dumps({"ms": (t1 - t0) * 1000, "sqlalchemy": "sqlalchemy" in sys.modules}))
"""


def open_in_fresh_process(script: str, path: str, sync: str) -> tuple[float, float, bool]:
    """(ms inside the child for import + open, ms of the child's whole life, whether it imported SQLAlchemy)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, path, sync], env=env, capture_output=True, text=True,
                          timeout=60)
    wall = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    return result["ms"], wall, result["sqlalchemy"]


def open_times(directory: str, sync: str, repeats: int) -> dict[str, tuple[float, float, bool]]:
    litemq_path = os.path.join(directory, "open-litemq.db")
    with litemq.connect(litemq_path, synchronous=sync) as conn:  # make it current before timing opens
        conn.declare_queue(QUEUE, durable=True)
    raw_path = os.path.join(directory, "open-raw.db")
    c = raw_connect(raw_path, sync)
    c.execute(RAW_DDL)
    c.commit()
    c.close()
    results: dict[str, list[tuple[float, float, bool]]] = {"litemq": [], "raw": []}
    for _ in range(repeats):  # interleaved, so both sides see the same machine
        results["litemq"].append(open_in_fresh_process(LITEMQ_OPEN, litemq_path, sync))
        results["raw"].append(open_in_fresh_process(RAW_OPEN, raw_path, sync))
    return {side: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                   any(r[2] for r in runs)) for side, runs in results.items()}


# --- report

def in_temp_dir(run: Callable[[str, int, str], tuple[float, float]], n: int, sync: str) -> tuple[float, float]:
    directory = tempfile.mkdtemp(prefix="litemq-hot-path-")
    try:
        return run(directory, n, sync)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages per run (default 20000)")
    parser.add_argument("--sync", default="NORMAL", choices=("NORMAL", "FULL"), help="synchronous (default NORMAL)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side; the median is reported (default 3)")
    parser.add_argument("--opens", type=int, default=7, help="fresh processes per side for the open timing (7)")
    args = parser.parse_args()

    print(f"litemq {litemq.__version__} hot path vs raw sqlite3 (the floor's SQL): n={args.n}, {BODY_BYTES}-byte "
          f"bodies, WAL, synchronous={args.sync}, median of {args.runs} runs")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"{platform.platform()}")
    runs: dict[str, list[tuple[float, float]]] = {"litemq": [], "raw": []}
    for r in range(args.runs):  # interleaved, so a slow moment of the machine does not favour one side
        for side, run in (("litemq", litemq_run), ("raw", raw_run)):
            publish, consume = in_temp_dir(run, args.n, args.sync)
            runs[side].append((publish, consume))
            print(f"  run {r + 1} {side:6}: publish {publish:9,.0f} msgs/s   get+ack {consume:9,.0f} msgs/s",
                  flush=True)
    directory = tempfile.mkdtemp(prefix="litemq-hot-path-open-")
    try:
        opens = open_times(directory, args.sync, args.opens)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    def median(side: str, i: int) -> float:
        return statistics.median(run[i] for run in runs[side])

    rows = [
        ("publish, 1 per call (msgs/s)", median("litemq", 0), median("raw", 0), ",.0f"),
        ("get + ack, 1 per call (msgs/s)", median("litemq", 1), median("raw", 1), ",.0f"),
        (f"import + open, fresh process (ms, median of {args.opens})", opens["litemq"][0], opens["raw"][0], ".1f"),
        ("  whole fresh process, wall (ms)", opens["litemq"][1], opens["raw"][1], ".1f"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"| {'operation':{width}} | {'litemq':>10} | {'raw sqlite3':>11} | {'litemq/raw':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 13}|{'-' * 12}|")
    for label, mine, raw, fmt in rows:
        print(f"| {label:{width}} | {mine:>10{fmt}} | {raw:>11{fmt}} | {mine / raw:>10.2f} |")
    print()
    print("msgs/s: higher is better (ratio below 1 = litemq slower); ms: lower is better (ratio above 1 = litemq "
          "slower).")
    print(f"Opening a current file imported SQLAlchemy: {'YES' if opens['litemq'][2] else 'no'}.")


if __name__ == "__main__":
    main()
