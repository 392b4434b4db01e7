"""What the processes started by test_processes.py run. Spawn imports this module in the child, so the workers
live here rather than in the test module.

Every worker reports through files in a directory the test gives it (its tmp_path): results as text files, and
any exception, of any kind, as ``errors/<worker name>.txt`` with its traceback. The test asserts that no error
file exists, so an exception inside a child cannot pass unnoticed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Iterator

import litemq

WAIT_SECONDS = 30.0
"""Longest a worker waits for a file the test writes (the test itself is bounded more tightly)."""


@contextlib.contextmanager
def reporting_errors(out_dir: str, name: str, *, expect_interrupt: bool = False) -> Iterator[None]:
    """Write any exception (SystemExit with a non-zero code included; KeyboardInterrupt too, unless expected) to
    ``errors/<name>.txt``, then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        if not expect_interrupt:
            _write_error(out_dir, name, traceback.format_exc())
        raise
    except SystemExit as exc:
        if exc.code not in (0, None):
            _write_error(out_dir, name, traceback.format_exc())
        raise
    except BaseException:
        _write_error(out_dir, name, traceback.format_exc())
        raise


def _write_error(out_dir: str, name: str, text: str) -> None:
    errors = Path(out_dir) / "errors"
    errors.mkdir(exist_ok=True)
    (errors / f"{name}.txt").write_text(text)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def wait_for_file(path: Path, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.005)


# --- many producers and consumers on one file

def produce(db: str, queue: str, producer: int, count: int, out_dir: str) -> None:
    """Publish ``p<producer>-<n>`` for n in 0..count-1, one per call, once the test writes ``go``."""
    name = f"producer-{producer}"
    with reporting_errors(out_dir, name):
        out = Path(out_dir)
        conn = litemq.connect(db)
        conn.declare_queue(queue, durable=True)
        write_atomically(out / f"ready-{name}", "")
        wait_for_file(out / "go")
        for n in range(count):
            conn.publish("", queue, b"p%d-%d" % (producer, n))
        conn.close()


def consume_until_producers_done(db: str, queue: str, consumer: int, out_dir: str, idle_seconds: float) -> None:
    """Ack every delivery until the queue stayed idle for ``idle_seconds`` after the test wrote
    ``producers-done``; then write ``acked-<consumer>.txt``: one ``<body> <redelivered 0/1>`` line per ack."""
    name = f"consumer-{consumer}"
    with reporting_errors(out_dir, name):
        out = Path(out_dir)
        conn = litemq.connect(db)
        conn.declare_queue(queue, durable=True)
        acked: list[str] = []
        write_atomically(out / f"ready-{name}", "")
        wait_for_file(out / "go")
        with conn.consume(queue, prefetch=10, inactivity_timeout=idle_seconds) as deliveries:
            while True:
                # Producers were done before this idle window began, so an empty window means an empty queue.
                finished = (out / "producers-done").exists()
                for delivery in deliveries:  # ends after idle_seconds without a delivery
                    delivery.ack()
                    acked.append(f"{delivery.body.decode()} {int(delivery.redelivered)}")
                if finished:
                    break
        conn.close()
        write_atomically(out / f"acked-{consumer}.txt", "\n".join(acked) + "\n" if acked else "")


# --- a waiting consumer is woken by another process's publish

def wait_for_one_message(db: str, queue: str, out_dir: str) -> None:
    """Start consuming, write ``ready``, then wait up to 10 s for one delivery; write its body to ``received``."""
    with reporting_errors(out_dir, "waiting-consumer"):
        out = Path(out_dir)
        conn = litemq.connect(db)
        consumer = conn.consume(queue)
        write_atomically(out / "ready", "")
        delivery = consumer.get(timeout=10)
        if delivery is None:
            raise AssertionError("no delivery within 10 s of writing 'ready'")
        delivery.ack()
        (out / "received").write_bytes(delivery.body)
        conn.close()


# --- processes that end without closing their connection

def publish_then_exit_without_close(db: str, queue: str, count: int, out_dir: str) -> None:
    """Declare a non-durable queue, publish ``m<n>`` transient messages, then os._exit(0): no close, no atexit."""
    try:
        conn = litemq.connect(db)
        conn.declare_queue(queue)
        for n in range(count):
            conn.publish("", queue, b"m%d" % n, litemq.Properties(delivery_mode=1))
    except BaseException:
        _write_error(out_dir, "vanishing-producer", traceback.format_exc())
        os._exit(1)
    os._exit(0)


OPEN_CONNECTIONS: list[litemq.Connection] = []
"""Connections a worker leaves open, still referenced at exit as a script's top-level ``conn`` would be."""


def get_without_ack_then_exit(db: str, queue: str, out_dir: str, how: str) -> None:
    """Get one message with a 600 s lease, never ack it, and end the process normally without closing, so only
    litemq's exit handling can give it back. ``how``: "return" or "sys.exit" with the connection still
    referenced; "garbage-collected": opened in a function that returned, and collected before the process ends."""
    with reporting_errors(out_dir, "unacking-getter"):
        if how == "garbage-collected":
            _get_without_ack(db, queue, out_dir)
            gc.collect()  # the connection is a reference cycle: collected at some later point, here at once
            return
        OPEN_CONNECTIONS.append(_get_without_ack(db, queue, out_dir))
        if how == "sys.exit":
            sys.exit(0)


def _get_without_ack(db: str, queue: str, out_dir: str) -> litemq.Connection:
    conn = litemq.connect(db)
    delivery = conn.get(queue, lease_seconds=600)
    if delivery is None:
        raise AssertionError(f"queue {queue!r} was empty")
    write_atomically(Path(out_dir) / "got", f"{delivery.body.decode()} {int(delivery.redelivered)}")
    return conn


def consume_one_without_ack_then_exit(db: str, queue: str, prefetch: int, out_dir: str) -> None:
    """Consume with a prefetch and a 600 s lease, take one delivery (the consumer may have claimed up to
    ``prefetch``), never ack, and return without closing."""
    with reporting_errors(out_dir, "unacking-consumer"):
        conn = litemq.connect(db)
        OPEN_CONNECTIONS.append(conn)
        consumer = conn.consume(queue, prefetch=prefetch, lease_seconds=600)
        delivery = consumer.get(timeout=10)
        if delivery is None:
            raise AssertionError(f"no delivery from {queue!r} within 10 s")
        write_atomically(Path(out_dir) / "got", f"{delivery.body.decode()} {int(delivery.redelivered)}")


def declare_exclusive_then_exit(db: str, out_dir: str) -> None:
    """Declare a server-named exclusive queue with a message in it, write its name to ``queue``, wait for the
    test's ``proceed``, and return without closing."""
    with reporting_errors(out_dir, "exclusive-owner"):
        out = Path(out_dir)
        conn = litemq.connect(db)
        OPEN_CONNECTIONS.append(conn)
        queue = conn.declare_queue("", exclusive=True).queue
        conn.publish("", queue, b"private")
        write_atomically(out / "queue", f"{queue}\n{os.getpid()}")
        wait_for_file(out / "proceed")
