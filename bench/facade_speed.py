"""What litemq.pika costs over the native API: the same work, one message per call, through both.

    python bench/facade_speed.py [--n 20000] [--runs 3]

Measured in one run of this script, each side on a fresh temporary file, sides interleaved, median of ``--runs``:

- publish: ``n`` publishes to the default exchange, one per call (native: ``conn.publish("", q, body)``;
  facade: ``channel.basic_publish("", q, body)``);
- get + ack: ``n`` times get one message and ack it (native: ``conn.get(q)`` then ``delivery.ack()``; facade:
  ``channel.basic_get(q)`` then ``channel.basic_ack(method.delivery_tag)``).

Both sides open the file with the same defaults (WAL, synchronous NORMAL), a durable queue, 100-byte bodies.
The ratio is facade/native msgs/s; the target is at least 0.8 (the facade adds at most a quarter to each call).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if (REPO / "litemq" / "__init__.py").is_file() and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout: measure this checkout's litemq

import litemq  # noqa: E402
from litemq import pika  # noqa: E402
from hot_path import BODY_BYTES, QUEUE, bodies, time_native_api  # noqa: E402  (bench/ is the script's directory, first on sys.path)

TARGET = 0.8


def prepare(path: str) -> None:
    """Create the schema and the queue, untimed (the first open of a file migrates it)."""
    with litemq.connect(path) as conn:
        conn.declare_queue(QUEUE, durable=True)


def native_run(path: str, n: int) -> tuple[float, float]:
    with litemq.connect(path) as conn:
        return time_native_api(conn, bodies(n), "native")


def facade_run(path: str, n: int) -> tuple[float, float]:
    payloads = bodies(n)
    connection = pika.BlockingConnection(pika.URLParameters("sqlite:///" + path))
    channel = connection.channel()
    basic_publish = channel.basic_publish
    t0 = time.perf_counter()
    for body in payloads:
        basic_publish("", QUEUE, body)
    t1 = time.perf_counter()
    basic_get, basic_ack = channel.basic_get, channel.basic_ack
    for i in range(n):
        method, _, body = basic_get(QUEUE)
        if method is None:
            raise RuntimeError(f"facade: queue empty after {i} of {n} gets")
        basic_ack(method.delivery_tag)
    t2 = time.perf_counter()
    if channel.basic_get(QUEUE) != (None, None, None):
        raise RuntimeError("facade: messages left after consuming all")
    connection.close()
    return n / (t1 - t0), n / (t2 - t1)


def in_temp_file(run: Callable[[str, int], tuple[float, float]], n: int) -> tuple[float, float]:
    directory = tempfile.mkdtemp(prefix="litemq-facade-speed-")
    try:
        path = os.path.join(directory, "bench.db")
        prepare(path)
        return run(path, n)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages per run (default 20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side; the median is reported (default 3)")
    args = parser.parse_args()

    print(f"litemq {litemq.__version__}: litemq.pika facade vs native API, n={args.n}, {BODY_BYTES}-byte bodies, "
          f"default exchange, WAL, synchronous=NORMAL, median of {args.runs} runs")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"{platform.platform()}")
    runs: dict[str, list[tuple[float, float]]] = {"native": [], "facade": []}
    for r in range(args.runs):
        # Interleaved, and the order alternates, so neither side always runs on a warmer or a busier machine.
        order = (("native", native_run), ("facade", facade_run))
        for side, run in (order if r % 2 == 0 else order[::-1]):
            publish, consume = in_temp_file(run, args.n)
            runs[side].append((publish, consume))
            print(f"  run {r + 1} {side:6}: publish {publish:9,.0f} msgs/s   get+ack {consume:9,.0f} msgs/s",
                  flush=True)

    def median(side: str, i: int) -> float:
        return statistics.median(run[i] for run in runs[side])

    rows = [("publish, 1 per call (msgs/s)", median("native", 0), median("facade", 0)),
            ("get + ack, 1 per call (msgs/s)", median("native", 1), median("facade", 1))]
    width = max(len(label) for label, _, _ in rows)
    print()
    print(f"| {'operation':{width}} | {'native':>10} | {'litemq.pika':>11} | {'facade/native':>13} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 13}|{'-' * 15}|")
    for label, native, facade in rows:
        print(f"| {label:{width}} | {native:>10,.0f} | {facade:>11,.0f} | {facade / native:>13.2f} |")
    print()
    verdict = ["met" if facade / native >= TARGET else "MISSED" for _, native, facade in rows]
    print(f"Target facade/native >= {TARGET}: publish {verdict[0]}, get + ack {verdict[1]}.")


if __name__ == "__main__":
    main()
