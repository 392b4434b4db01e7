"""What the processes started by test_consumer_priorities.py run (spawn imports this module in the child). Each
reports through files in the test's directory, and any exception as ``errors/<name>.txt`` (process_workers)."""

from __future__ import annotations

from pathlib import Path

import litemq
from process_workers import reporting_errors, wait_for_file, write_atomically


def consume_with_priority(db: str, queue: str, priority: int, prefetch: int, ack: bool, out_dir: str,
                          name: str) -> None:
    """Consume the queue with this priority and prefetch, writing ``ready-<name>`` once registered; append each
    body to ``<name>.txt`` (acking it when ``ack``) until the test writes ``stop``."""
    with reporting_errors(out_dir, name):
        out = Path(out_dir)
        conn = litemq.connect(db)
        received: list[str] = []
        with conn.consume(queue, prefetch=prefetch, priority=priority) as consumer:
            write_atomically(out / f"ready-{name}", "")
            while not (out / "stop").exists():
                delivery = consumer.get(timeout=0.05)
                if delivery is None:
                    continue
                if ack:
                    delivery.ack()
                received.append(delivery.body.decode())
                write_atomically(out / f"{name}.txt", "\n".join(received))
        wait_for_file(out / "stop")
        conn.close()
