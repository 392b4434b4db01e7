"""What the programs that the two-machine tests start inside network namespaces run:
``python -m two_machines_workers WORKER ARGS...`` (see netns.Machine.python).

Each worker reports on stdout, one line per event, flushed at once, times as ``time.time()`` (one clock for every
namespace of the host); an exception ends it with a traceback on stderr and a non-zero status.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

WAIT_SECONDS = 25.0
"""Longest a worker waits for anything (the test that started it is bounded more tightly)."""


def say(*words: object) -> None:
    print(*words, flush=True)


# --- the harness itself, with plain psycopg

def probe(host: str, port: str) -> None:
    """Print ``connected`` or ``unreachable <error>`` for a TCP connection to host:port within 1 s."""
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            say("connected")
    except OSError as exc:
        say("unreachable", repr(exc))


def session(url: str, again: str) -> None:
    """Open a session, print ``backend <pid>`` and ``selected 1``; once the file ``again`` exists, run the query
    again and print ``selected again <time>``; then sit until killed."""
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        say("backend", conn.info.backend_pid)
        say("selected", conn.execute("SELECT 1").fetchall()[0][0])
        _wait_for_file(Path(again))
        say("selected again", conn.execute("SELECT 1").fetchall()[0][0], time.time())
        time.sleep(WAIT_SECONDS)


# --- litemq on PostgreSQL

def produce(url: str, queue: str, count: str) -> None:
    """Publish ``m0`` .. ``m<count-1>`` persistently to a durable queue; print ``published <count>``."""
    import litemq
    with litemq.connect(url) as conn:
        conn.declare_queue(queue, durable=True)
        for n in range(int(count)):
            conn.publish("", queue, f"m{n}".encode())
        say("published", count)


def hold(url: str, queue: str, prefetch: str, lease_seconds: str) -> None:
    """Consume with this prefetch and lease, take ``prefetch`` deliveries and never ack them: print
    ``got <body> <redelivered 0/1> <time>`` for each, then ``holding``, and sit until killed."""
    import litemq
    conn = litemq.connect(url, lease_seconds=float(lease_seconds))
    conn.declare_queue(queue, durable=True)
    consumer = conn.consume(queue, prefetch=int(prefetch))
    for _ in range(int(prefetch)):
        delivery = consumer.get(timeout=10)
        if delivery is None:
            raise AssertionError(f"no delivery from {queue!r} within 10 s")
        say("got", delivery.body.decode(), int(delivery.redelivered), time.time())
    say("holding")
    time.sleep(WAIT_SECONDS)


def drain(url: str, queue: str, count: str) -> None:
    """Ack every delivery until ``count`` distinct bodies came, printing ``got <body> <redelivered 0/1> <time>``
    for each (its arrival time), then ``done``; fail after WAIT_SECONDS."""
    import litemq
    seen: set[str] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    with litemq.connect(url) as conn:
        conn.declare_queue(queue, durable=True)
        consumer = conn.consume(queue, prefetch=10)
        while len(seen) < int(count):
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(seen)} of {count} messages from {queue!r} in {WAIT_SECONDS} s")
            delivery = consumer.get(timeout=0.5)
            if delivery is None:
                continue
            arrived = time.time()
            delivery.ack()
            seen.add(delivery.body.decode())
            say("got", delivery.body.decode(), int(delivery.redelivered), arrived)
    say("done")


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {WAIT_SECONDS} s")
        time.sleep(0.01)


WORKERS = {worker.__name__: worker for worker in (probe, session, produce, hold, drain)}

if __name__ == "__main__":
    WORKERS[sys.argv[1]](*sys.argv[2:])
