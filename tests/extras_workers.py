"""What the processes started by test_delayed_messages.py and test_single_active_consumer.py run.

Spawn imports this module in the child, so the workers live here rather than in the test modules. As in
process_workers.py, every worker reports through files in a directory the test gives it (its tmp_path): results
written atomically, and any exception as ``errors/<worker name>.txt`` with its traceback, so an exception inside a
child cannot pass unnoticed.
"""

from __future__ import annotations

import time
from pathlib import Path

import litemq
from process_workers import reporting_errors, write_atomically


def time_one_delivery(db: str, queue: str, out_dir: str, inactivity_timeout: float) -> None:
    """Iterate a consumer of ``queue`` (blocking, with ``inactivity_timeout``) after writing ``waiting``; ack the
    first delivery and write ``received``: its body and the wall-clock time (time.time()) it arrived."""
    with reporting_errors(out_dir, "timed-consumer"):
        out = Path(out_dir)
        conn = litemq.connect(db)
        consumer = conn.consume(queue, inactivity_timeout=inactivity_timeout)
        write_atomically(out / "waiting", "")
        for delivery in consumer:
            arrived = time.time()
            delivery.ack()
            write_atomically(out / "received", f"{delivery.body.decode()} {arrived!r}")
            break
        else:
            raise AssertionError(f"no delivery from {queue!r} within {inactivity_timeout} s of waiting")
        conn.close()
