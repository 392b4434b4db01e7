"""Moving ready messages from one queue to the end of another, as an operator does by hand to replay a dead-letter
queue (RabbitMQ's management page calls it "Move messages", and does it with a shovel): ``litemq move`` and the
management page's action."""

from __future__ import annotations

from typing import Optional

from .connection import Connection
from .policy import queue_policy
from .store import inspect


def move_ready(conn: Connection, source: str, destination: str, limit: Optional[int]) -> int:
    """Move up to ``limit`` ready messages (all when None) from the head of ``source`` to the end of
    ``destination``, in delivery order; how many. QueueNotFound when either is missing."""
    for queue in (source, destination):
        conn.declare_queue(queue, passive=True)
    with conn._store.write_exclusive() as store:
        target = store.queue(destination)
        max_priority = (queue_policy(target.arguments).max_priority or 0) if target is not None else 0
        moved = inspect.move(store, source, destination, limit, max_priority)
        store.wake([destination])
    return moved
