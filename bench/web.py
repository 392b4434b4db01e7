"""``python -m bench --web``: the management page's JSON API on a large broker, and what its refresh costs a
publisher.

    python -m bench --web [--queues 1000] [--messages 1000000] [--requests 200] [--engine postgresql]

1. Fill a fresh store with ``--queues`` queues holding ``--messages`` messages between them (100-byte bodies),
   one connection holding 1,000 of them unacked, with a consumer on every tenth queue.
2. Serve it with ``litemq web`` (a process of its own, the standard library's server) and time ``--requests``
   requests of each JSON endpoint from this process, one at a time (HTTP wall time: connect, answer, read):
   p50, p99 and max.
3. A publisher process publishes one message at a time for a few seconds while nobody looks, then while a client
   here asks ``/api/queues`` and ``/api/overview`` as ten open pages would (a pair every 0.5 s), then back to back
   without pause: its publishes per second and latency p50, p99 and max in each phase. The page reads in read-only
   transactions (on SQLite, WAL readers take no write lock): what the nonstop phase takes from the publisher is the
   CPU the page's server and this client use (on a 2-core machine), not a lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = b"x" * 100
PUBLISH_SECONDS = 5.0
TARGET_P99_MS = 50.0


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint (default 200)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    return parser.parse_args(argv)


def fill(url: str, queues: int, messages: int) -> "Any":
    """The broker filled; returns the connection that holds the unacked messages and the consumers (kept open)."""
    import litemq

    conn = litemq.connect(url)
    per_queue, extra = divmod(messages, queues)
    started = time.monotonic()
    for q in range(queues):
        name = f"q{q:04d}"
        conn.declare_queue(name, durable=True, arguments={"x-message-ttl": 3_600_000} if q % 7 == 0 else None)
        count = per_queue + (1 if q < extra else 0)
        for start in range(0, count, 1000):
            conn.publish_many("", name, [BODY] * min(1000, count - start))
    holder = litemq.connect(url)
    for q in range(0, queues, queues // 10 or 1):
        for _ in range(100):
            holder.get(f"q{q:04d}")
    channel = holder.channel()
    for q in range(0, queues, 10):
        channel.consume(f"q{q:04d}", prefetch=1)  # registered; never iterated, so it holds what prefetch allows
    print(f"filled {queues:,} queues with {messages:,} messages in {time.monotonic() - started:.0f} s", flush=True)
    conn.close()
    return holder


def serve(url: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "litemq", "--db", url, "web", "--port", "0", "--read-only"],
                               env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    while True:
        line = process.stderr.readline()
        found = re.search(r"serving on (http://\S+/)", line)
        if found:
            # Drain what it logs from now on, so a full pipe never stalls it.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, found.group(1).rstrip("/")
        if not line:
            raise RuntimeError(f"litemq web exited with {process.wait()}")


def fetch(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as reply:
        reply.read()
    return (time.perf_counter() - started) * 1000


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return (statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], ordered[-1])


PUBLISHER = """
import json, sys, time
import litemq
conn = litemq.connect(sys.argv[1])
conn.declare_queue("publisher", durable=True)
latencies = []
body = b"x" * 100
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    started = time.perf_counter()
    conn.publish("", "publisher", body)
    latencies.append((time.perf_counter() - started) * 1000)
conn.close()
print(json.dumps(latencies))
"""


def publish_for(url: str, seconds: float) -> list[float]:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PUBLISHER, url, str(seconds)], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    directory = tempfile.mkdtemp(prefix="litemq-bench-web-")
    schema = None
    if args.engine == "postgresql":
        schema = f"bench_web_{uuid.uuid4().hex[:12]}"
        url = f"{args.pg_url}?schema={schema}"
    else:
        url = os.path.join(directory, "web.db")
    print(f"litemq bench --web: {args.queues:,} queues, {args.messages:,} messages, {args.engine}", flush=True)
    holder = fill(url, args.queues, args.messages)
    server, base = serve(url)
    try:
        fetch(base + "/api/overview")  # the first look starts the page's sampler
        middle = f"?name=q{args.queues // 2:04d}&browse=20"
        endpoints = [("/api/overview", ""), ("/api/queues", ""), ("/api/queue", middle), ("/api/connections", ""),
                     ("/api/exchanges", ""), ("/metrics", "")]
        print(f"\n{'endpoint':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'bytes':>10}")
        worst_p99 = 0.0
        for path, query in endpoints:
            with urllib.request.urlopen(base + path + query, timeout=60) as reply:
                size = len(reply.read())
            times = [fetch(base + path + query) for _ in range(args.requests)]
            p50, p99, worst = percentiles(times)
            worst_p99 = max(worst_p99, p99)
            print(f"{path + query:<34}{p50:>9.1f}{p99:>9.1f}{worst:>9.1f}{size:>10,}", flush=True)
        print(f"worst p99 {worst_p99:.1f} ms (target: under {TARGET_P99_MS:g} ms)")

        quiet = publish_for(url, PUBLISH_SECONDS)
        phases = [("nobody looking", quiet, 0)]
        for label, pause in (("10 pages open (a poll each 5 s)", 0.5), ("refreshed nonstop", 0.0)):
            stop = threading.Event()
            refreshes = [0]

            def refresh(pause: float = pause) -> None:
                while not stop.is_set():
                    fetch(base + "/api/queues")
                    fetch(base + "/api/overview")
                    refreshes[0] += 2
                    stop.wait(pause)

            looker = threading.Thread(target=refresh, daemon=True)
            looker.start()
            busy = publish_for(url, PUBLISH_SECONDS)
            stop.set()
            looker.join(60)
            phases.append((label, busy, refreshes[0]))
        print(f"\npublisher, one message per publish, {PUBLISH_SECONDS:g} s each, while the page is asked "
              "/api/queues and /api/overview:")
        print(f"{'':<34}{'req/s':>7}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        for label, latencies, requests in phases:
            p50, p99, worst = percentiles(latencies)
            print(f"{label:<34}{requests / PUBLISH_SECONDS:>7.0f}{len(latencies) / PUBLISH_SECONDS:>9,.0f}"
                  f"{p50:>9.2f}{p99:>9.2f}{worst:>9.1f}")
    finally:
        server.terminate()
        server.wait(10)
        holder.close()
        shutil.rmtree(directory, ignore_errors=True)
        if schema is not None:
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 0
