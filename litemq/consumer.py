"""Consumers: claiming in batches up to the prefetch, handing deliveries out one by one, and waiting for more
without busy polling (a doorbell rung by publishers, and a timer for what no one announces)."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from .message import Delivery
from .session import Held, clock
from .store.sqlite import MessageRow
from .wakeup import Doorbell, doorbell_address

if TYPE_CHECKING:
    from .broker import Channel

CLAIM_BATCH = 100
"""Most messages one claim takes; with an unlimited prefetch this bounds what one consumer holds unseen."""


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
        self._store = channel._store
        self._session = channel._session
        # Claimed but not yet handed out.
        self._buffer: deque[tuple[MessageRow, Optional[Held]]] = deque()
        self._seen_version = (-1, -1)
        # Bound now, before any claim, so no ring between a claim finding nothing and the wait is lost.
        self._doorbell = Doorbell(doorbell_address(self._session.connection_id, channel.number, consumer_tag),
                                  self._file_changed)

    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active:
            with self._store.lock:
                delivery = self._next_buffered()
                if delivery is None and self._room() > 0 and self._fill():
                    delivery = self._next_buffered()
            if delivery is not None:
                return delivery
            if deadline is not None and time.monotonic() >= deadline:
                return None
            with _sigterm_exits():
                self._wait(deadline)
        return None

    def __iter__(self) -> Iterator[Delivery]:
        with _sigterm_exits():
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
            self.channel._cancel(self)

    def stop(self) -> None:
        self.active = False
        self._doorbell.close()

    def unseen(self) -> list[Held]:
        return [held for _, held in self._buffer if held is not None]

    def take_unseen(self) -> list[Held]:
        unseen = self.unseen()
        self._buffer.clear()
        return unseen

    def _room(self) -> int:
        if self.auto_ack or self.prefetch == 0:
            return CLAIM_BATCH
        return min(CLAIM_BATCH, self.prefetch - self.unacked - len(self._buffer))

    def _fill(self) -> bool:
        claimed = self.channel._claim(self, self._room())
        self._buffer.extend(claimed)
        return bool(claimed)

    def _next_buffered(self) -> Optional[Delivery]:
        while self._buffer:
            row, held = self._buffer.popleft()
            if held is not None and clock() >= held.expires_at:
                continue  # its lease ran out while it waited here; the queue may have given it to another
            return self.channel._deliver(row, self.queue, held, self)
        return None

    def _wait(self, deadline: Optional[float]) -> None:
        """Sleep until rung, until a lease in this queue expires, until another connection dies, or until the file
        shows ready messages that no doorbell announced."""
        next_expiry: Optional[float] = None
        while self.active:
            if self._file_changed():
                with self._store.lock:
                    if self._store.ready_count(self.queue) != 0:
                        return  # ready messages, or the queue is gone: claim to find out
                    next_expiry = self._store.next_lease_expiry(self.queue)
            watch, delay = self._session.watch()
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
            if next_expiry is not None:
                delay = min(delay, next_expiry - clock() + 0.001)
            if delay <= 0:
                return
            woke = self._doorbell.wait(delay, watch)
            if woke == "rung" or self._session.sweep(force=woke == "watch"):
                return

    def _file_changed(self) -> bool:
        version = (self._store.data_version(), self._store.commits)
        changed = version != self._seen_version
        self._seen_version = version
        return changed

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.channel.is_open:
            self.cancel()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While consuming in the main thread, SIGTERM unwinds like Ctrl-C (as SystemExit, so ``with`` blocks close the
    connection and return what was not acked) instead of killing the process on the spot."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
