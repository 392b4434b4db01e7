"""``litemq demo``: a producer process and a consumer process talking through the broker (a file, or a schema on a
PostgreSQL server)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..connection import connect
from .common import Refused, file_path, given, server, where

DEMO_QUEUE = "litemq-demo"


def cmd_demo(args: argparse.Namespace) -> int:
    # The two processes get a file by its absolute path, a server's URL (which may hold a password) through their
    # environment rather than their command line, which every local user can read.
    on_server = server(args) is not None
    url = given(args) if on_server else file_path(args)
    print(f"litemq demo on {where(args)}: a consumer process and a producer process, queue {DEMO_QUEUE!r}")
    with connect(url) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        conn.purge_queue(DEMO_QUEUE)
    base = [sys.executable, "-m", "litemq"] + ([] if on_server else ["--db", url])
    env = {**os.environ, "LITEMQ_URL": url} if on_server else None
    consumer = subprocess.Popen(base + ["demo-consumer", "-n", str(args.count)], env=env)
    producer = subprocess.Popen(base + ["demo-producer", "-n", str(args.count)], env=env)
    try:
        codes = [producer.wait(timeout=60), consumer.wait(timeout=60)]
    except subprocess.TimeoutExpired:
        for process in (producer, consumer):
            process.kill()
        raise Refused("the demo timed out")
    return 0 if codes == [0, 0] else 1


def demo_producer(args: argparse.Namespace) -> int:
    with connect(args.db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        for i in range(1, args.count + 1):
            body = f"Hello World! #{i}"
            conn.publish("", DEMO_QUEUE, body)
            _say(f" [producer pid {os.getpid()}] Sent {body!r}")
    return 0


def demo_consumer(args: argparse.Namespace) -> int:
    with connect(args.db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        _say(f" [consumer pid {os.getpid()}] Waiting for messages")
        received = 0
        with conn.consume(DEMO_QUEUE, prefetch=1, inactivity_timeout=30) as consumer:
            for delivery in consumer:
                _say(f" [consumer pid {os.getpid()}] Received {delivery.body.decode()!r}")
                delivery.ack()
                received += 1
                if received == args.count:
                    break
    return 0 if received == args.count else 1


def _say(line: str) -> None:
    # One write per line: the demo's two processes share one terminal, and their lines must not interleave.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())
