"""The ``litemq`` command. For now: ``litemq demo``, a producer and a consumer process talking through one file."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Optional, Sequence

from .broker import connect, resolve_path
from .errors import LiteMQError

DEMO_QUEUE = "litemq-demo"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="litemq", description="An embedded message broker in one SQLite file.")
    parser.add_argument("--db", help="the file (a path or sqlite:///path); default $LITEMQ_URL, else litemq.db")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run a producer and a consumer process that talk through the file")
    demo.add_argument("-n", "--count", type=int, default=5, help="how many messages to send (default 5)")
    producer = commands.add_parser("demo-producer", help=argparse.SUPPRESS)
    producer.add_argument("-n", "--count", type=int, default=5)
    consumer = commands.add_parser("demo-consumer", help=argparse.SUPPRESS)
    consumer.add_argument("-n", "--count", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args.db, args.count)
        if args.command == "demo-producer":
            return _demo_producer(args.db, args.count)
        return _demo_consumer(args.db, args.count)
    except LiteMQError as exc:
        print(f"litemq: {exc}", file=sys.stderr)
        return 1


def _demo(db: Optional[str], count: int) -> int:
    path = resolve_path(db)
    print(f"litemq demo on {path}: a consumer process and a producer process, queue {DEMO_QUEUE!r}")
    with connect(path) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        conn.purge_queue(DEMO_QUEUE)
    base = [sys.executable, "-m", "litemq", "--db", path]
    consumer = subprocess.Popen(base + ["demo-consumer", "-n", str(count)])
    producer = subprocess.Popen(base + ["demo-producer", "-n", str(count)])
    try:
        codes = [producer.wait(timeout=60), consumer.wait(timeout=60)]
    except subprocess.TimeoutExpired:
        for process in (producer, consumer):
            process.kill()
        print("litemq demo: timed out", file=sys.stderr)
        return 1
    return 0 if codes == [0, 0] else 1


def _demo_producer(db: Optional[str], count: int) -> int:
    with connect(db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        for i in range(1, count + 1):
            body = f"Hello World! #{i}"
            conn.publish("", DEMO_QUEUE, body)
            _say(f" [producer pid {os.getpid()}] Sent {body!r}")
    return 0


def _demo_consumer(db: Optional[str], count: int) -> int:
    with connect(db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        _say(f" [consumer pid {os.getpid()}] Waiting for messages")
        received = 0
        with conn.consume(DEMO_QUEUE, prefetch=1, inactivity_timeout=30) as consumer:
            for delivery in consumer:
                _say(f" [consumer pid {os.getpid()}] Received {delivery.body.decode()!r}")
                delivery.ack()
                received += 1
                if received == count:
                    break
    return 0 if received == count else 1


def _say(line: str) -> None:
    # One write per line: the demo's two processes share one terminal, and their lines must not interleave.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())
