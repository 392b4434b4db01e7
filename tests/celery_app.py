"""The Celery app that test_celery.py runs in real ``celery worker`` processes (and sends tasks with): its broker,
its result backend and the file its tasks record their runs in come from the environment, so each test module's
workers use a file of their own.

Every run of a task appends one JSON line (task, its mark, the worker's pid and node, whether the delivery was a
redelivery) to $CELERY_TEST_RECORD: O_APPEND writes of a line are whole, whichever process makes them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import litemq.kombu  # noqa: F401  (registers the litemq:// scheme with kombu)
from celery import Celery
from celery.worker.control import inspect_command
from kombu import Queue
from kombu.common import Broadcast

app = Celery("celery_app", broker=os.environ.get("CELERY_TEST_BROKER", "litemq:///celery.db"),
             backend=os.environ.get("CELERY_TEST_BACKEND", "rpc://"))
app.conf.update(
    broker_transport_options={"lease_seconds": float(os.environ.get("CELERY_TEST_LEASE_SECONDS", "60"))},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=int(os.environ.get("CELERY_TEST_PREFETCH_MULTIPLIER", "4")),
    result_expires=None,
    # Workers choose among these with -Q; "broadcast" is a fanout exchange with a queue of its own per worker.
    task_queues=[Queue("celery"), Queue("solo"), Queue("prefork"), Broadcast("broadcast")],
)


@inspect_command()
def event_loop(state: Any) -> str:
    """Which of Celery's loops the worker runs: asynloop (its hub) or synloop (blocking drain_events)."""
    return str(state.consumer.loop.__name__)


def record(event: str, mark: str, **fields: Any) -> None:
    from celery import current_task

    request = current_task.request
    line = json.dumps({"event": event, "mark": mark, "pid": os.getpid(), "node": request.hostname,
                       "redelivered": bool((request.delivery_info or {}).get("redelivered")),
                       "retries": request.retries, "at": time.time(), **fields})
    fd = os.open(os.environ["CELERY_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def where() -> int:
    """The pid of the process that ran it."""
    return os.getpid()


@app.task
def run_once(mark: str) -> str:
    record("run", mark)
    return mark


@app.task(acks_late=True)
def slow(mark: str, seconds: float) -> str:
    record("start", mark)
    time.sleep(seconds)
    record("end", mark)
    return mark


@app.task
def total(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(bind=True, max_retries=5)
def flaky(self: Any, mark: str, failures: int) -> int:
    """Fails ``failures`` times, retrying each time after half a second."""
    record("run", mark)
    if self.request.retries < failures:
        raise self.retry(countdown=0.5)
    return self.request.retries
