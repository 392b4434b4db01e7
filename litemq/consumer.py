"""Consumers: claiming in batches up to the prefetch, handing deliveries out one by one, and waiting for more
without busy polling (a doorbell rung by publishers, and a timer for what no one announces)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from contextlib import contextmanager
from operator import attrgetter
from typing import Callable, Generator, Iterable, Iterator, NamedTuple, Optional, Protocol, Sequence, TypeVar, Union

from .errors import QueueNotFound
from .log import logger
from .message import Delivery
from .policy import PLAIN_QUEUE, QueuePolicy
from .session import Held, Session
from .store.contract import Doorbell, MessageRow, Store, WouldWait
from .store.waiting import sleep
from .timing import RECHECK_SECONDS, check_seconds, clock

CLAIM_BATCH = 100
"""Most messages one claim takes (a consumer with prefetch 0 takes one at a time)."""
HUSH_SECONDS = (0.002, 0.02)
"""How long a waiter leaves its doorbells unheard after a ring that announced nothing (anyone can ring them): the
first, doubled at each such ring in a row up to the second."""


Signal = Union[int, signal.Signals]
Claimed = list[tuple[MessageRow, Optional[Held]]]
"""Messages claimed for a consumer, each with its lease (None: taken for good, auto-ack)."""


class Channel(Protocol):
    """What a consumer needs of its channel (``broker.Channel``, which makes consumers)."""

    _store: Store
    _session: Session
    number: int
    channel_prefetch_count: int

    @property
    def is_open(self) -> bool:
        ...

    def _claim(self, consumer: "Consumer", limit: int) -> Claimed:
        ...

    def _claim_in(self, store: Store, consumer: "Consumer", limit: int) -> Claimed:
        ...

    def _is_active(self, store: Store, consumer: "Consumer") -> bool:
        ...

    def _deliver(self, row: MessageRow, queue: str, held: Optional[Held], consumer: Optional["Consumer"],
                 policy: QueuePolicy, message_count: Optional[int] = None) -> Delivery:
        ...

    def _holding(self) -> int:
        ...

    def _cancel(self, consumer: "Consumer") -> None:
        ...


class Consuming(ABC):
    """What iterating consumers share: ``run(callback)``, and a warm shutdown (``finish()``, ``stop_on``) that lets
    the delivery in hand be finished and then ends the iteration without taking another."""

    inactivity_timeout: Optional[float]
    finishing = False
    """Set by ``finish()``: the iteration ends before the next delivery."""
    _stop_signals: tuple[int, ...] = ()

    @abstractmethod
    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        ...

    @abstractmethod
    def cancel(self) -> list[Delivery]:
        ...

    @abstractmethod
    def _doorbells(self) -> list[Doorbell]:
        ...

    @abstractmethod
    def _consuming(self) -> bool:
        ...

    def __iter__(self) -> Iterator[Delivery]:
        with _finishing_on(self, self._stop_signals), _sigterm_exits():
            while self._consuming():
                delivery = self.get(self.inactivity_timeout)
                if delivery is None:
                    break
                yield delivery
        if self.finishing:
            self.cancel()  # what was claimed and not handed out goes back unmarked

    def run(self, callback: Callable[[Delivery], object], *, stop_on: Iterable[Signal] = ()) -> None:
        """Call ``callback`` with each delivery until cancelled, finished, or idle for ``inactivity_timeout``.

        ``stop_on`` (for example ``(signal.SIGTERM,)``) is a warm shutdown: on that signal the callback in progress
        runs to its end (its ack lands), then run returns without taking another delivery; what was claimed but
        not handed out goes back to the queue unmarked. A second signal stops at once. Main thread only."""
        if stop_on:
            self.stop_on(*stop_on)
        for delivery in self:
            callback(delivery)

    def stop_on(self: "C", *signals: Signal) -> "C":
        """While iterating in the main thread, these signals ``finish()`` this consumer (a second one stops at once:
        SystemExit, or KeyboardInterrupt for SIGINT); the handlers before are restored when iteration ends.
        Returns the consumer, so ``for delivery in consumer.stop_on(signal.SIGTERM):`` reads as it works."""
        self._stop_signals = tuple(signal.Signals(signum).value for signum in signals)
        return self

    def finish(self) -> None:
        """Warm shutdown, from any thread or a signal handler: the iteration ends before its next delivery (the
        current one is the caller's to finish and ack), and what was claimed but not handed out goes back."""
        self.finishing = True
        for doorbell in self._doorbells():  # a waiting iteration wakes to see it
            doorbell.ring()


C = TypeVar("C", bound=Consuming)


class Consumer(Consuming):
    """A subscription to a queue. Iterate it for deliveries, or ``run(callback)``; ``cancel()`` to stop,
    ``finish()`` (or ``stop_on``) for a warm shutdown."""

    def __init__(self, channel: Channel, queue: str, consumer_tag: str, prefetch: int, auto_ack: bool,
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
        self.priority = 0
        self.queue_created_at: Optional[float] = None
        """When its queue was declared (a lease names the queue it was claimed from)."""
        """Its ``x-priority``: the queue delivers to its highest-priority consumers that have room."""
        self.reported_full = False
        """What its row last told consumers of lower priority: that it holds its prefetch, so they may claim."""
        self._store = channel._store
        self._session = channel._session
        # Claimed but not yet handed out.
        self._buffer: deque[tuple[MessageRow, Optional[Held]]] = deque()
        self.expiry_horizon = 0.0
        """Before this time no lease in the queue can have expired, as far as this consumer last looked."""
        self.refill_found_nothing = False
        """An ack's refill claimed for it and found nothing: a claim right after would find nothing either (what
        comes later rings its doorbell, and its waiter's first look reads the queue)."""
        # Bound now, before any claim, so no ring between a claim finding nothing and the wait is lost.
        self.doorbell = self._store.doorbell(self._session.connection_id, channel.number, consumer_tag, queue,
                                             f"consumer {consumer_tag!r} of queue {queue!r} in {self._session.path}")
        self._waiter = Waiter(self._session)

    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came, or at
        once when the consumer is finishing."""
        check_seconds("timeout", timeout, forever=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active:
            with self._store.lock:
                delivery = self._poll()
            if delivery is not None or self.finishing:
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

    def _poll(self, ready: Optional[int] = -1) -> Optional[Delivery]:
        """The next delivery without waiting (under the store's lock), claiming when there is room and, where
        ``ready`` (the queue's ready count) is known, work to claim. Once finishing, nothing new is claimed and
        only an auto-ack consumer's buffered deliveries are handed out: they are no longer in the queue."""
        if self.finishing:
            return self._next_buffered() if self.auto_ack else None
        delivery = self._next_buffered()
        if delivery is None and self._room() > 0 and (ready == -1 or _has_work(ready, self)) and self._fill():
            delivery = self._next_buffered()
        return delivery

    def _doorbells(self) -> list[Doorbell]:
        return [self.doorbell]

    def _consuming(self) -> bool:
        return self.active

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
        """False while another consumer of a single-active-consumer queue is the active one, or while a consumer of
        higher priority has room."""
        if self.policy.single_active_consumer and not self.channel._is_active(self._store, self):
            return False
        return not self._store.consumer_ranking(self.queue, self.priority)[0]

    def ready_to_take(self) -> int:
        """Its queue's ready count when it has room and may claim now, else 0 (also when the queue is gone): what a
        ring's answer reads first, in one statement for a priority-0 consumer (``ready_count_ranked``)."""
        if self.priority or self.policy.single_active_consumer:
            ready = self._store.ready_count(self.queue)
            return ready if ready and self._room() > 0 and self.may_claim() else 0
        ready, outranked = self._store.ready_count_ranked(self.queue)
        return ready if ready and not outranked and self._room() > 0 else 0

    def full_after(self, claimed: int, limit: int) -> bool:
        """Whether claiming ``claimed`` of the ``limit`` it asked for leaves it no room (its prefetch, or its
        channel's, is reached); an auto-ack or unlimited consumer always has room."""
        if self.auto_ack or claimed < limit:
            return False
        # The limit was all the room it had unless a cap set it (CLAIM_BATCH, or one at a time without a prefetch).
        own = self.prefetch > 0 and self.prefetch - self.unacked - len(self._buffer) <= limit
        cap = self.channel.channel_prefetch_count
        return own or (cap > 0 and cap - self.channel._holding() <= limit)

    def report_room(self, store: Store, full: bool) -> None:
        """Tell the queue's other consumers (in any process) whether this one has room; when it is full, those of
        lower priority may claim, so wake them."""
        if full == self.reported_full:
            return
        self.reported_full = full
        store.set_consumer_room(self._session.connection_id, self.channel.number, self.consumer_tag, not full)
        if full:
            store.wake([self.queue])

    def unseen(self) -> list[Held]:
        return [held for _, held in self._buffer if held is not None]

    def take_unseen(self) -> list[Held]:
        unseen = self.unseen()
        self._buffer.clear()
        return unseen

    def refill(self, store: Store, acked: int, acked_on_channel: int) -> None:
        """In an ack's transaction (``acked`` of this consumer's deliveries, ``acked_on_channel`` of the channel's
        consumers'): claim what the freed room allows when nothing is waiting to be handed out."""
        room = self.refill_room(acked, acked_on_channel)
        if room > 0:
            self.refilled(store, self.channel._claim_in(store, self, room))

    def refill_room(self, acked: int, acked_on_channel: int) -> int:
        """How many messages an ack's refill claims (``refill``'s arguments); 0 for none."""
        if not self.active or self._buffer or self.finishing:
            return 0
        return self._room(acked, acked_on_channel)

    def refilled(self, store: Store, claimed: Claimed) -> None:
        """What an ack's refill claimed, handed out once its transaction commits."""
        self.refill_found_nothing = not claimed
        if claimed:
            store.after_commit(lambda: self._take(claimed))

    def _take(self, claimed: Claimed) -> None:
        self._buffer.extend(claimed)
        if self.waiting:  # claimed by another thread's ack while this consumer's thread sleeps
            self.doorbell.ring()

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

    def _fill(self, ready: Optional[int] = None) -> bool:
        """Claim what its room allows, or no more than ``ready`` (its queue's count, just read): one message is
        read, then leased by its id, where a claim of several builds temporary tables."""
        room = self._room()
        claimed = self.channel._claim(self, room if ready is None else min(room, ready))
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


class ConsumerSet(Consuming):
    """Consumers of several queues, read in one thread (``Channel.consume_many``). Iterating it yields the
    deliveries of all of them, taking turns: each consumer with a delivery ready gives one before any gives a
    second, so no queue starves another. It waits for all of them at once, without polling."""

    def __init__(self, consumers: Sequence[Consumer], inactivity_timeout: Optional[float]) -> None:
        self.consumers = list(consumers)
        self.inactivity_timeout = inactivity_timeout
        self._waiter = Waiter(consumers[0]._session)
        self._turn = 0

    @property
    def active(self) -> bool:
        """Whether any of its consumers still consumes."""
        return any(consumer.active for consumer in self.consumers)

    def _consuming(self) -> bool:
        return self.active

    def get(self, timeout: Optional[float] = None) -> Optional[Delivery]:
        """The next delivery from any of the queues, waiting up to ``timeout`` seconds (forever when None); None
        if none came. A consumer whose queue is deleted is cancelled (a warning is logged) and the rest go on;
        when it was the last, QueueNotFound is raised, as a single consumer raises it."""
        check_seconds("timeout", timeout, forever=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active:
            delivery = self._poll()
            if delivery is not None or self.finishing:
                return delivery
            if deadline is not None and time.monotonic() >= deadline:
                return None
            active = [consumer for consumer in self.consumers if consumer.active]
            with _sigterm_exits():
                for consumer in active:
                    consumer.waiting = True
                try:
                    self._waiter.wait(active, deadline)
                finally:
                    for consumer in active:
                        consumer.waiting = False
        return None

    def _poll(self) -> Optional[Delivery]:
        # From the consumer after the one served last: turns go round. A consumer with nothing buffered claims only
        # when its queue shows ready messages, so an empty queue costs a read, not a write transaction, per turn.
        count = len(self.consumers)
        for step in range(count):
            index = (self._turn + step) % count
            consumer = self.consumers[index]
            if not consumer.active or (not consumer._buffer and not consumer.finishing and consumer._room() <= 0):
                continue  # nothing to hand out, and no room to claim: no need to read its queue
            try:
                with consumer._store.lock:
                    ready = None if consumer._buffer else consumer._store.ready_count(consumer.queue)
                    delivery = consumer._poll(-1 if consumer._buffer else ready)
            except QueueNotFound as exc:
                if consumer.active or not self.active:
                    raise
                logger().warning("litemq: %s; the other queues are still consumed", exc)
                continue
            if delivery is not None:
                self._turn = index + 1
                return delivery
        return None

    def next_claimed(self) -> Optional[Delivery]:
        """The next delivery already claimed for one of the consumers, taking turns as ``get`` does, without
        reading the store; None when none holds one."""
        count = len(self.consumers)
        for step in range(count):
            index = (self._turn + step) % count
            consumer = self.consumers[index]
            if consumer.active and consumer._buffer:
                with consumer._store.lock:
                    delivery = consumer._poll()
                if delivery is not None:
                    self._turn = index + 1
                    return delivery
        return None

    def finish(self) -> None:
        for consumer in self.consumers:
            consumer.finishing = True  # no ack refills them meanwhile
        super().finish()

    def cancel(self) -> list[Delivery]:
        """Cancel every consumer (see ``Consumer.cancel``); the deliveries an auto-ack consumer had taken."""
        taken: list[Delivery] = []
        for consumer in self.consumers:
            taken.extend(consumer.cancel())
        return taken

    def _doorbells(self) -> list[Doorbell]:
        return [consumer.doorbell for consumer in self.consumers]

    def __enter__(self) -> "ConsumerSet":
        return self

    def __exit__(self, *exc: object) -> None:
        for consumer in self.consumers:
            consumer.__exit__()


class Nap(NamedTuple):
    """What a waiter sleeps on until one is readable: its consumers' doorbells (none while hushed) and other sockets,
    for at most ``timeout`` seconds."""

    doorbells: list[Doorbell]
    sockets: list[socket.socket]
    timeout: float


class Waiter:
    """Sleeps for one or more consumers of a connection: until a doorbell rings, a lease in their queues expires,
    another connection dies, or the file shows ready messages that no doorbell announced.

    A ring only says "look": the waiter returns to its caller (who claims, a write) only when the file changed and
    shows work for its consumers. Anyone on the machine can ring a doorbell, and a flood of rings costs reads."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._store = session.store
        self._seen_version = (-1, -1)
        self.found: Optional[dict["Consumer", Optional[int]]] = None
        """The ready counts the wait that just ended on work read (None when it ended otherwise), 0 for a consumer
        that may not take what its queue holds, so that whoever claims for it need not read or ask again."""

    def wait(self, consumers: Sequence["Consumer"], deadline: Optional[float],
             others: Sequence[socket.socket] = ()) -> Optional[socket.socket]:
        """Returns the socket among ``others`` that became readable, if that is what ended the wait."""
        steps = self.waiting(consumers, deadline, others)
        try:
            nap = next(steps)
            while True:
                nap = steps.send(sleep(nap.doorbells, nap.sockets, nap.timeout, self._file_unseen))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def waiting(self, consumers: Sequence["Consumer"], deadline: Optional[float],
                others: Sequence[socket.socket] = (), told: bool = False
                ) -> Generator[Nap, Optional[socket.socket], Optional[socket.socket]]:
        """``wait`` as steps: each step does the waiter's reads and writes, then yields the ``Nap`` to take and is
        sent what woke it (what ``store.waiting.sleep`` returns). The asyncio consumer takes the naps on its event
        loop and the steps on its connection's worker thread; the blocking one does both in its own thread.
        ``told``: the caller ends the wait itself when a consumer stops or finishes, and a delivery claimed for one
        rings its doorbell; a timer's wake that finds the file unchanged then looks at no consumer."""
        next_expiry: Optional[float] = None
        rung = False
        hushed_until = 0.0
        hush = HUSH_SECONDS[0]
        stale = True  # the next ring that announces nothing may be late news, of a change seen before it was heard
        quiet = False
        """Woken by the timer alone, and told: what the consumers were at the last look, they still are."""
        bells: list[Doorbell] = []
        bell: Optional[socket.socket] = None
        """The doorbell socket whose ring ended the last nap."""
        while True:
            self.found = None
            # A step over a thousand consumers holds the GIL (and an event loop waiting on another thread) for
            # about 0.1 ms per pass over them, however it iterates (each is its own object in memory): few passes.
            quiet = quiet and not self._file_unseen()
            if not quiet:
                active = consumers if all(map(_active, consumers)) else [c for c in consumers if c.active]
                if not active or any(map(_finishing, active)):
                    return None  # a ring from finish() announces no change to the file, yet must end the wait
            if bell is not None:
                with self._store.lock:
                    if self._rung_has_work(bell, active):
                        return None  # the count it read is news enough: no need to ask whether the file changed
            changed = self._file_changed()
            if rung and not changed and stale:
                # Once after each change: the ring of a publish whose message was claimed before the ring was read
                # (after a timer's look, say). Hushing then would leave the next message's ring unheard, and every
                # message after it could come at the end of a hush in turn.
                stale = False
            elif rung and not changed:
                # A ring that announced nothing: leave the doorbells unheard a moment, so that a flood of them
                # costs a few dozen looks a second. The file is looked at again when the moment ends. Nor may a
                # flood keep the timer's duties (checking other connections' locks) from running.
                hushed_until = time.monotonic() + hush
                hush = min(2 * hush, HUSH_SECONDS[1])
                if self._session.sweep():
                    return None
            elif changed:
                hush = HUSH_SECONDS[0]
                stale = True
            rung = False
            if changed:
                with self._store.lock:
                    counts = ready_counts(self._store, active)
                    if counts.count(0) < len(counts) or any(map(_buffer, active)):
                        takes = {c: ready for c, ready in zip(active, counts) if _may_take(ready, c)}
                        if takes:
                            self.found = {c: takes.get(c, 0) for c in active}
                            return None  # ready messages it has room for, or a queue is gone: claim to find out
                    expiries = _lease_expiries(self._store, active)
                    # Delayed messages falling due, TTLs and unused queues expiring: whoever wakes first does it.
                    deadlines = [d for d in self._store.deadlines() if d is not None]
                next_expiry = min((e for e in [*expiries, *deadlines] if e is not None), default=None)
                # Until then, a claim after a ring need not look for expired leases. Leases taken later expire
                # later than they were taken; the recheck bounds how stale this knowledge gets.
                horizon = min(next_expiry or float("inf"), clock() + RECHECK_SECONDS)
                for consumer, expiry in zip(active, expiries):
                    consumer.expiry_horizon = min(expiry or float("inf"), horizon)
            elif not quiet and any(map(_buffer, active)):
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
                    quiet = False
                    continue
                delay = min(delay, until + 0.001)
            hushed = hushed_until - time.monotonic()
            if hushed > 0:
                bells, delay = [], min(delay, hushed)
            elif not (quiet and bells):
                bells = list(map(_doorbell, active))
            woke = yield Nap(bells, [*others, *watch], delay)
            bell = None
            quiet = told and woke is None
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
                bell = woke

    def _rung_has_work(self, bell: socket.socket, consumers: Sequence["Consumer"]) -> bool:
        """A consumer's doorbell rang: whether its queue shows work it may take (then ``found`` says so and
        nothing else), read from that queue alone. A publish rings the consumers of the queue it reached: the other
        queues' counts, read for them all, are mostly the same as before (those of other queues rang their own
        doorbells, heard at the next nap), and whether the file changed is a read it need not make: a ring that
        announced nothing finds no work it may take here, and meets the hush."""
        for consumer in consumers:
            if consumer.doorbell.socket is bell:
                if consumer._buffer:
                    return False
                ready = consumer.ready_to_take()
                if not ready:
                    return False
                self.found = {c: ready if c is consumer else 0 for c in consumers}
                return True
        return False

    def _version(self) -> tuple[int, int]:
        return self._store.data_version(), self._store.commits

    def _file_changed(self) -> bool:
        version = self._version()
        changed = version != self._seen_version
        self._seen_version = version
        return changed

    def forget_seen(self) -> None:
        """The next wait looks at the file as if it had changed (a step before it was abandoned midway)."""
        self._seen_version = (-1, -1)

    def _file_unseen(self) -> bool:
        """Whether the file changed since the waiter last looked (without counting this as a look)."""
        return self._version() != self._seen_version


_active, _finishing, _buffer, _doorbell = (attrgetter(name) for name in ("active", "finishing", "_buffer", "doorbell"))


def ready_counts(store: Store, consumers: Sequence[Consumer]) -> list[Optional[int]]:
    """Each consumer's queue's ready count (None: the queue is gone); for many, in one statement, not one each."""
    if len(consumers) == 1:
        return [store.ready_count(consumers[0].queue)]
    counts = store.counts_with_queues([c.queue for c in consumers], 0, 0)
    return [counts[c.queue][0] if c.queue in counts else None for c in consumers]


def claim_found_work(consumers: Sequence[Consumer], found: Optional[dict[Consumer, Optional[int]]] = None
                     ) -> tuple[list[Consumer], dict[Consumer, BaseException]]:
    """When a waiter's wait ended: which consumers may have work, each claimed for already where its queue shows
    ready messages and it has room (one read of the counts for all, rather than one per consumer after the wake;
    none where the waiter read them just now: ``found``), and the error a claim met (the queue deleted, ...), which
    its consumer then meets as its own claim would."""
    store = consumers[0]._store
    failed: dict[Consumer, BaseException] = {}
    with store.lock:
        if found is not None and all(c in found for c in consumers):
            # The waiter counted only the consumers that may take (their priority, a single active consumer):
            # not asked again.
            counts = found
            ready = [c for c in consumers if c.finishing or not c.active or c._buffer or counts[c] != 0]
        else:
            counts = dict(zip(consumers, ready_counts(store, consumers)))
            ready = [c for c in consumers if c.finishing or not c.active or _has_work(counts[c], c)]
        for consumer in ready:
            # Not where the queue is gone: that claim cancels the consumer, closing a doorbell an event loop may
            # still watch.
            if consumer.active and not consumer.finishing and counts[consumer] and not consumer._buffer \
                    and consumer._room() > 0:
                try:
                    consumer._fill(counts[consumer])
                except WouldWait:
                    raise  # the first claim, on an event loop's thread (``litemq.aio``): nothing done, redone elsewhere
                except Exception as exc:
                    failed[consumer] = exc
    return ready, failed


def _lease_expiries(store: Store, consumers: Sequence[Consumer]) -> list[Optional[float]]:
    if len(consumers) == 1:
        return [store.next_lease_expiry(consumers[0].queue)]
    expiries = store.next_lease_expiries([c.queue for c in consumers])
    return [expiries.get(c.queue) for c in consumers]


def _has_work(ready: Optional[int], consumer: Consumer) -> bool:
    return bool(consumer._buffer) or ready is None or (ready != 0 and consumer.may_claim())


def _may_take(ready: Optional[int], consumer: Consumer) -> bool:
    # A consumer without room waits for the ack that frees some: that ack claims for it (and rings it when it
    # sleeps in another thread). Returning for it would only read its queue again and again until then.
    return bool(consumer._buffer) or ready is None or (ready != 0 and consumer._room() > 0 and consumer.may_claim())


@contextmanager
def _finishing_on(consuming: Consuming, signals: tuple[int, ...]) -> Iterator[None]:
    if not signals:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("stop_on works in the main thread only (Python runs signal handlers there); in another "
                           "thread, call finish() from a signal handler of your own")

    def on_signal(signum: int, frame: object) -> None:
        if consuming.finishing:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        consuming.finish()

    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


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
