"""Consumers: claiming in batches up to the prefetch, handing deliveries out one by one, and waiting for more
without busy polling (a doorbell rung by publishers, and a timer for what no one announces)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from .broker import check_seconds
from .message import Delivery
from .policy import PLAIN_QUEUE, QueuePolicy
from .session import RECHECK_SECONDS, Held, clock
from .store.sqlite import MessageRow, SQLiteStore
from .wakeup import Doorbell, doorbell_address, sleep

if TYPE_CHECKING:
    from .broker import Channel
    from .session import Session

CLAIM_BATCH = 100
"""Most messages one claim takes (a consumer with prefetch 0 takes one at a time)."""
HUSH_SECONDS = (0.002, 0.02)
"""How long a waiter leaves its doorbells unheard after a ring that announced nothing (anyone can ring them): the
first, doubled at each such ring in a row up to the second."""


class Consumer:
    """A subscription to a queue. Iterate it for deliveries, or ``run(callback)``; ``cancel()`` to stop."""

    def __init__(self, channel: "Channel", queue: str, consumer_tag: str, prefetch: int, auto_ack: bool,
                 lease_seconds: float, inactivity_timeout: Optional[float], policy: QueuePolicy = PLAIN_QUEUE) -> None:
        self.channel = channel
        self.queue = queue
        self.consumer_tag = consumer_tag
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.lease_seconds = lease_seconds
        self.inactivity_timeout = inactivity_timeout
        self.policy = policy
        self.active = True
        self.waiting = False
        """A thread is in ``get``, waiting: an ack made in another thread that claims for it rings it awake."""
        self.unacked = 0
        self._store = channel._store
        self._session = channel._session
        # Claimed but not yet handed out.
        self._buffer: deque[tuple[MessageRow, Optional[Held]]] = deque()
        self.expiry_horizon = 0.0
        """Before this time no lease in the queue can have expired, as far as this consumer last looked."""
        # Bound now, before any claim, so no ring between a claim finding nothing and the wait is lost.
        self.doorbell = Doorbell(doorbell_address(self._session.connection_id, channel.number, consumer_tag),
                                 f"consumer {consumer_tag!r} of queue {queue!r} in {self._session.path}")
        self._waiter = Waiter(self._session)

    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came."""
        check_seconds("timeout", timeout, forever=True)
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
                self.waiting = True
                try:
                    self._waiter.wait([self], deadline)
                finally:
                    self.waiting = False
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

    def cancel(self) -> list[Delivery]:
        """Stop consuming. Deliveries already handed out stay unacked (RabbitMQ's rule); unseen ones go back to
        the queue, except an auto-ack consumer's, which are already taken: those are returned (as pika does)."""
        if not self.active:
            return []
        with self._store.lock:
            taken = [self.channel._deliver(row, self.queue, None, self, self.policy) for row, held in self._buffer if held is None]
            self._buffer = deque(entry for entry in self._buffer if entry[1] is not None)
            self.channel._cancel(self)
        return taken

    def stop(self) -> None:
        self.active = False
        self.doorbell.close()

    def may_claim(self) -> bool:
        """False while another consumer of a single-active-consumer queue is the active one."""
        return not self.policy.single_active_consumer or self.channel._is_active(self._store, self)

    def unseen(self) -> list[Held]:
        return [held for _, held in self._buffer if held is not None]

    def take_unseen(self) -> list[Held]:
        unseen = self.unseen()
        self._buffer.clear()
        return unseen

    def refill(self, store: SQLiteStore, acked: int, acked_on_channel: int) -> None:
        """In an ack's transaction (``acked`` of this consumer's deliveries, ``acked_on_channel`` of the channel's
        consumers'): claim what the freed room allows when nothing is waiting to be handed out."""
        if not self.active or self._buffer:
            return
        room = self._room(acked, acked_on_channel)
        if room > 0:
            claimed = self.channel._claim_in(store, self, room)
            if claimed:
                store.after_commit(lambda: self._take(claimed))

    def _take(self, claimed: list[tuple[MessageRow, Optional[Held]]]) -> None:
        self._buffer.extend(claimed)
        if self.waiting:  # claimed by another thread's ack while this consumer's thread sleeps
            self._session.bell.ring([self.doorbell.address])

    def _room(self, acked: int = 0, acked_on_channel: int = 0) -> int:
        # Without a prefetch, one message per claim: consumers waiting on one queue then take turns, as
        # RabbitMQ's round-robin gives them. A prefetch lets a consumer claim that many in one statement.
        if self.auto_ack:
            return min(CLAIM_BATCH, self.prefetch or 1)
        if not self.prefetch:
            room = 1
        else:
            room = min(CLAIM_BATCH, self.prefetch - (self.unacked - acked) - len(self._buffer))
        if self.channel.channel_prefetch_count:
            room = min(room, self.channel.channel_prefetch_count - (self.channel._holding() - acked_on_channel))
        return room

    def _fill(self) -> bool:
        claimed = self.channel._claim(self, self._room())
        self._buffer.extend(claimed)
        return bool(claimed)

    def _next_buffered(self) -> Optional[Delivery]:
        while self._buffer:
            row, held = self._buffer.popleft()
            if held is not None and clock() >= held.expires_at:
                continue  # its lease ran out while it waited here; the queue may have given it to another
            return self.channel._deliver(row, self.queue, held, self, self.policy)
        return None

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.channel.is_open:
            self.cancel()


class Waiter:
    """Sleeps for one or more consumers of a connection: until a doorbell rings, a lease in their queues expires,
    another connection dies, or the file shows ready messages that no doorbell announced.

    A ring only says "look": the waiter returns to its caller (who claims, a write) only when the file changed and
    shows work for its consumers. Anyone on the machine can ring a doorbell, and a flood of rings costs reads."""

    def __init__(self, session: "Session") -> None:
        self._session = session
        self._store = session.store
        self._seen_version = (-1, -1)

    def wait(self, consumers: Sequence["Consumer"], deadline: Optional[float],
             others: Sequence[socket.socket] = ()) -> Optional[socket.socket]:
        """Returns the socket among ``others`` that became readable, if that is what ended the wait."""
        next_expiry: Optional[float] = None
        rung = False
        hushed_until = 0.0
        hush = HUSH_SECONDS[0]
        while True:
            active = [consumer for consumer in consumers if consumer.active]
            if not active:
                return None
            changed = self._file_changed()
            if rung and not changed:
                # A ring that announced nothing: leave the doorbells unheard a moment, so that a flood of them
                # costs a few dozen looks a second. The file is looked at again when the moment ends. Nor may a
                # flood keep the timer's duties (checking other connections' locks) from running.
                hushed_until = time.monotonic() + hush
                hush = min(2 * hush, HUSH_SECONDS[1])
                if self._session.sweep():
                    return None
            elif changed:
                hush = HUSH_SECONDS[0]
            rung = False
            if changed:
                with self._store.lock:
                    if any(_has_work(self._store.ready_count(c.queue), c) for c in active):
                        return None  # ready messages, or a queue is gone: claim to find out
                    expiries = [self._store.next_lease_expiry(c.queue) for c in active]
                    # Delayed messages falling due, TTLs and unused queues expiring: whoever wakes first does it.
                    deadlines = [d for d in self._store.deadlines() if d is not None]
                next_expiry = min((e for e in [*expiries, *deadlines] if e is not None), default=None)
                # Until then, a claim after a ring need not look for expired leases. Leases taken later expire
                # later than they were taken; the recheck bounds how stale this knowledge gets.
                horizon = min(next_expiry or float("inf"), clock() + RECHECK_SECONDS)
                for consumer, expiry in zip(active, expiries):
                    consumer.expiry_horizon = min(expiry or float("inf"), horizon)
            elif any(c._buffer for c in active):
                return None  # claimed for them by another thread's ack
            watch, delay = self._session.watch()
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
                if delay <= 0:
                    return None
            if next_expiry is not None:
                until = next_expiry - clock()
                if until <= 0:
                    # Due now. This waiter does it (whether or not its consumers have room to claim), and the file
                    # change it makes leads back here with fresh counts and deadlines.
                    self._session.settle_due([c.queue for c in active])
                    next_expiry = None
                    continue
                delay = min(delay, until + 0.001)
            hushed = hushed_until - time.monotonic()
            if hushed > 0:
                bells, delay = [], min(delay, hushed)
            else:
                bells = [c.doorbell for c in active]
            woke = sleep(bells, [*others, *watch], delay, self._file_unseen)
            if woke is None:
                if self._session.sweep():
                    return None
            elif woke in others:
                return woke
            elif woke in watch:
                self._session.sweep(force=True, hung_up=woke)
                return None
            else:
                rung = True  # or the file changed while polling: the top of the loop looks

    def _version(self) -> tuple[int, int]:
        return self._store.data_version(), self._store.commits

    def _file_changed(self) -> bool:
        version = self._version()
        changed = version != self._seen_version
        self._seen_version = version
        return changed

    def _file_unseen(self) -> bool:
        """Whether the file changed since the waiter last looked (without counting this as a look)."""
        return self._version() != self._seen_version


def _has_work(ready: Optional[int], consumer: Consumer) -> bool:
    return bool(consumer._buffer) or ready is None or (ready != 0 and consumer.may_claim())


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
