"""Consumers: claiming in batches up to the prefetch, handing deliveries out one by one, waiting for more."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from .message import Delivery
from .store.sqlite import MessageRow

if TYPE_CHECKING:
    from .broker import Channel

CLAIM_BATCH = 100
"""Most messages one claim takes; with an unlimited prefetch this bounds what one consumer holds unseen."""
RECHECK_SECONDS = 1.0
"""How often a waiting consumer claims even when nothing changed: expired leases come back on a claim."""


class Consumer:
    """A subscription to a queue. Iterate it for deliveries, or ``run(callback)``; ``cancel()`` to stop."""

    def __init__(self, channel: "Channel", queue: str, consumer_tag: str, prefetch: int, auto_ack: bool,
                 lease_seconds: float, inactivity_timeout: Optional[float]) -> None:
        self.channel = channel
        self.queue = queue
        self.consumer_tag = consumer_tag
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.lease_seconds = lease_seconds
        self.inactivity_timeout = inactivity_timeout
        self.active = True
        self.unacked = 0
        # Claimed but not yet handed out: (row, token, local lease deadline).
        self._buffer: deque[tuple[MessageRow, int, float]] = deque()

    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(self.channel)
        while self.active:
            delivery = self._next_buffered()
            if delivery is not None:
                return delivery
            if self._room() > 0 and self._fill():
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            waiter.wait(remaining)
        return None

    def __iter__(self) -> Iterator[Delivery]:
        while self.active:
            delivery = self.get(self.inactivity_timeout)
            if delivery is None:
                return
            yield delivery

    def run(self, callback: Callable[[Delivery], object]) -> None:
        """Call ``callback`` with each delivery until the consumer is cancelled (or falls idle, with a timeout)."""
        for delivery in self:
            callback(delivery)

    def cancel(self) -> None:
        """Stop consuming. Deliveries already handed out stay unacked (RabbitMQ's rule); unseen ones go back."""
        if self.active:
            self.channel._cancel(self, self.take_unseen())

    def take_unseen(self) -> list[tuple[int, int]]:
        unseen = [(row.id, token) for row, token, _ in self._buffer if token]
        self._buffer.clear()
        return unseen

    def _room(self) -> int:
        if self.auto_ack or self.prefetch == 0:
            return CLAIM_BATCH
        return min(CLAIM_BATCH, self.prefetch - self.unacked - len(self._buffer))

    def _fill(self) -> bool:
        now = time.monotonic()
        claimed = self.channel._claim(self, self._room())
        self._buffer.extend((row, token, now + self.lease_seconds) for row, token in claimed)
        return bool(claimed)

    def _next_buffered(self) -> Optional[Delivery]:
        while self._buffer:
            row, token, lease_deadline = self._buffer.popleft()
            if token and time.monotonic() >= lease_deadline:
                continue  # its lease ran out while it waited here; the queue may have given it to another
            return self.channel._deliver(row, self.queue, token, self, self.auto_ack)
        return None

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.channel.is_open:
            self.cancel()


class _Waiter:
    """Sleeps until the file changes (another connection commits, or this one does), backing off while idle."""

    MIN_SLEEP = 0.0005
    MAX_SLEEP = 0.01

    def __init__(self, channel: "Channel") -> None:
        self._store = channel._store
        self._seen = self._version()
        self._sleep = self.MIN_SLEEP
        self._recheck_at = time.monotonic() + RECHECK_SECONDS

    def _version(self) -> tuple[int, int]:
        return self._store.data_version(), self._store.commits

    def wait(self, timeout: Optional[float]) -> None:
        deadline = self._recheck_at if timeout is None else min(self._recheck_at, time.monotonic() + timeout)
        while True:
            version = self._version()
            if version != self._seen:
                self._seen = version
                self._sleep = self.MIN_SLEEP
                return
            now = time.monotonic()
            if now >= deadline:
                self._recheck_at = now + RECHECK_SECONDS
                return
            time.sleep(min(self._sleep, deadline - now))
            self._sleep = min(self._sleep * 2, self.MAX_SLEEP)
