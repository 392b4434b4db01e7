"""The Celery app that ``python -m bench --celery`` runs in its worker processes, on the broker it names.

Settings come from the environment: $BENCH_CELERY_BROKER (the broker URL), $BENCH_CELERY_QUEUE (the one queue
the tasks go to and the workers read) and $BENCH_CELERY_OUT (a directory). Each worker process writes there one
line per task it ran ("sent started finished", UTC seconds) in a file of its own, and, when it is ready to
consume, the time of that in ready-<pid>; it then waits for the file $BENCH_CELERY_OUT/go before it consumes, so
that several workers start together on a full queue. No result backend: the broker is what is measured.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import litemq.kombu  # noqa: F401  (registers the litemq:// scheme with kombu)
from celery import Celery
from celery.signals import worker_ready

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench")
OUT = os.environ.get("BENCH_CELERY_OUT", ".")
GO_WAIT_SECONDS = 120.0

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "litemq:///bench.db"))
app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)

_record: Optional[Any] = None


def _out() -> Any:
    global _record
    if _record is None:
        _record = open(os.path.join(OUT, f"runs-{os.getpid()}"), "a", buffering=1)
    return _record


@app.task
def tick(sent: float) -> None:
    started = time.time()
    _out().write(f"{sent} {started} {time.time()}\n")


@worker_ready.connect
def _ready(**_: Any) -> None:
    with open(os.path.join(OUT, f"ready-{os.getpid()}"), "w") as out:
        out.write(str(time.time()))
    deadline = time.monotonic() + GO_WAIT_SECONDS
    while not os.path.exists(os.path.join(OUT, "go")) and time.monotonic() < deadline:
        time.sleep(0.002)
