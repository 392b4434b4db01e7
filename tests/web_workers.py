"""The producer and consumer processes the tests of ``litemq web`` watch (spawned: the test module's imports stay
out of them). They report through files in the directory the test gives them, as process_workers' do."""

from __future__ import annotations

import time
from pathlib import Path

import litemq
from process_workers import reporting_errors, write_atomically


def publish_steadily(db: str, queue: str, per_second: float, out_dir: str) -> None:
    """Publish ``m<n>`` to the queue about ``per_second`` times a second until killed; ``ready`` once the first
    is in."""
    with reporting_errors(out_dir, "producer", expect_interrupt=True):
        conn = litemq.connect(db)
        conn.declare_queue(queue, durable=True)
        n = 0
        while True:
            conn.publish("", queue, f"m{n}")
            if n == 0:
                write_atomically(Path(out_dir) / "ready-producer", "")
            n += 1
            time.sleep(1 / per_second)


def hold_deliveries(db: str, queue: str, prefetch: int, out_dir: str) -> None:
    """Consume the queue with ``prefetch`` and never ack: the consumer shows on the page holding that many until
    killed; ``ready-consumer`` once it holds them all."""
    with reporting_errors(out_dir, "consumer", expect_interrupt=True):
        conn = litemq.connect(db)
        conn.declare_queue(queue, passive=True)  # the test declared it, with its arguments
        held = []
        with conn.consume(queue, prefetch=prefetch, consumer_tag="holder") as deliveries:
            for delivery in deliveries:
                held.append(delivery)
                if len(held) == prefetch:
                    write_atomically(Path(out_dir) / "ready-consumer", "")
                    while True:
                        time.sleep(1)


def ack_steadily(db: str, queue: str, per_second: float, out_dir: str) -> None:
    """Get a message of the queue and ack it at once, about ``per_second`` times a second, until killed (holding one
    only for that moment); ``ready-acker`` once it has acked one."""
    with reporting_errors(out_dir, "acker", expect_interrupt=True):
        conn = litemq.connect(db)
        conn.declare_queue(queue, passive=True)
        acked = 0
        while True:
            delivery = conn.get(queue)
            if delivery is not None:
                delivery.ack()
                acked += 1
                if acked == 1:
                    write_atomically(Path(out_dir) / "ready-acker", "")
            time.sleep(1 / per_second)
