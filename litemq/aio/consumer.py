"""An asyncio consumer: ``async for delivery in channel.consume("jobs", prefetch=10)``.

It claims as the blocking ``Consumer`` does (it is one, driven from the loop): claims run on the connection's
worker thread, deliveries already claimed are handed out on the loop when nothing holds the store, and an idle
consumer waits with the connection's other idle consumers on the loop (``idle``), holding no thread.

The next delivery is fetched by a task of its own, which an ``await`` only waits for: cancelling the ``await`` (a
``wait_for`` timeout) leaves the task, and whatever it claimed, for the next ``await``. Cancelling the consumer
returns what was claimed and not handed out to the queue unmarked, the delivery that task made included.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Optional, Protocol, cast

from ..broker import Channel
from ..consumer import Consumer, ConsumerSet, Consuming
from ..errors import QueueNotFound
from ..log import logger
from ..message import Delivery
from ..timing import check_seconds
from .acks import Acks
from .consuming import AsyncConsuming
from .delivery import AsyncDelivery, Settles
from .idle import Idle
from .worker import Worker


class Scope(Settles, Protocol):
    """What a consumer needs of its channel (``AsyncChannel``)."""

    _channel: Channel
    _worker: Worker
    _idle: Idle
    _acks: Acks

    @property
    def is_open(self) -> bool:
        ...


class AsyncConsumer(AsyncConsuming):
    """A subscription to a queue, for asyncio. ``async for`` it (or ``await get(timeout)``); ``await cancel()``
    to stop, ``finish()`` (or ``stop_on``) for a warm shutdown; ``async with`` cancels it at the end of the
    block."""

    def __init__(self, channel: Scope, queue: str, options: dict[str, Any]) -> None:
        check_seconds("inactivity_timeout", options.get("inactivity_timeout"), forever=True)
        self.channel = channel
        self.queue = queue
        self.inactivity_timeout: Optional[float] = options.pop("inactivity_timeout", None)
        self._options = options
        self._consumer: Optional[Consuming] = None
        """The blocking consumer it drives (a ``ConsumerSet`` for ``AsyncConsumerSet``), once registered."""
        self._next: Optional["asyncio.Task[Optional[Delivery]]"] = None
        self._closing = False

    async def start(self) -> "AsyncConsumer":
        """Register the consumer (basic.consume) if it is not yet: iterating does it too. Raises what ``consume``
        raises (QueueNotFound, AccessRefused, ...)."""
        if self._consumer is None:
            channel = self.channel._channel
            self._consumer = await self.channel._worker.run(lambda: channel.consume(self.queue, **self._options))
        return self

    @property
    def consumer_tag(self) -> Optional[str]:
        return self._consumer.consumer_tag if isinstance(self._consumer, Consumer) else None

    @property
    def active(self) -> bool:
        return self._consumer is not None and self._consumer._consuming() and not self._closing

    async def get(self, timeout: Optional[float] = None) -> Optional[AsyncDelivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came, when the
        consumer is cancelled, or at once when it is finishing."""
        check_seconds("timeout", timeout, forever=True)
        self.channel._acks.raise_failure()  # an ack queued before, failed at its commit
        await self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._next is None and self.active:
            delivery = self._hand_out()  # one claimed already: no task, no turn of the loop
            if delivery is not None:
                return AsyncDelivery(delivery, self.channel)
            if not await self._waited_here(deadline):
                break
            if deadline is not None and time.monotonic() >= deadline and not self._hand_out_ready():
                return None
        task = self._fetching()
        if task is None:
            return None
        if not task.done():
            # Waiting does not cancel the fetch: a cancelled or timed-out await leaves it for the next one.
            await asyncio.wait([task], timeout=timeout)
            if not task.done():
                return None
        return self._taken()

    async def _waited_here(self, deadline: Optional[float]) -> bool:
        """For one consumer with nothing in hand: a claim on the loop's thread (``Worker.here``) and, when it finds
        nothing, a wait on the loop (``idle``) in this await itself, without a fetch task: a ring's claim fills the
        consumer's hand, so cancelling the wait loses nothing, and the delivery comes two turns of the loop sooner.
        False where that cannot be (a claim on the worker; it pops what it claims, so it runs in a fetch task)."""
        consumer = self._consumer
        idle = self.channel._idle
        if not isinstance(consumer, Consumer) or consumer.finishing or idle.closed or consumer._buffer:
            return False
        refilled_empty, consumer.refill_found_nothing = consumer.refill_found_nothing, False
        if consumer._room() > 0 and not refilled_empty:  # else the ack's refill just claimed: a write spared
            done, _ = self.channel._worker.here(consumer._store, consumer._fill)
            if not done:
                return False
        if consumer._buffer or not consumer.active:
            return True
        try:
            await idle.wait([consumer], None if deadline is None else max(0.0, deadline - time.monotonic()))
        except QueueNotFound:  # claimed for while waiting: its consumer is cancelled
            if not consumer.active:
                raise
        return True

    def _hand_out_ready(self) -> bool:
        consumer = self._consumer
        return isinstance(consumer, Consumer) and bool(consumer._buffer)

    def _fetching(self) -> Optional["asyncio.Task[Optional[Delivery]]"]:
        """The task fetching the next delivery (started if none is), or None when the consumer has ended."""
        if self._next is None and self.active:
            self._next = asyncio.get_running_loop().create_task(self._fetch())
        return self._next

    def _taken(self) -> Optional[AsyncDelivery]:
        """What the done fetch brought (raising what it met); the next ``get`` starts another."""
        assert self._next is not None
        task, self._next = self._next, None
        delivery = task.result()
        return None if delivery is None else AsyncDelivery(delivery, self.channel)

    def _members(self) -> list[Consumer]:
        """The blocking consumers of its queues."""
        consuming = self._consumer
        if consuming is None:
            return []
        return consuming.consumers if isinstance(consuming, ConsumerSet) else [cast(Consumer, consuming)]

    async def _fetch(self) -> Optional[Delivery]:
        consuming = self._consumer
        assert consuming is not None
        worker, idle = self.channel._worker, self.channel._idle
        while consuming._consuming() and not self._closing and not idle.closed:
            delivery = self._hand_out()
            if delivery is None:
                # One consumer's claim is one write: on the loop's thread where that never waits (Worker.here).
                store = consuming._store if isinstance(consuming, Consumer) else None
                delivery = await worker.run(_poll, consuming, store=store)
            if delivery is not None or consuming.finishing:
                return delivery
            try:
                await idle.wait([consumer for consumer in self._members() if consumer.active], None)
            except QueueNotFound as exc:  # claimed for while waiting: its consumer is cancelled
                if not consuming._consuming():
                    raise
                logger().warning("litemq: %s; the other queues are still consumed", exc)
        return None

    def _hand_out(self) -> Optional[Delivery]:
        return hand_out(cast(Consumer, self._consumer))

    @property
    def finishing(self) -> bool:
        return self._consumer is not None and self._consumer.finishing

    def finish(self) -> None:
        """Warm shutdown: iteration ends before its next delivery (the one in hand is the caller's to finish and
        ack); ``cancel()`` then returns what was claimed and not handed out to the queue, unmarked."""
        if self._consumer is not None:
            self._consumer.finishing = True
            for consumer in self._members():
                consumer.finishing = True  # no ack refills them meanwhile
                self.channel._idle.wake(consumer)

    async def cancel(self) -> list[AsyncDelivery]:
        """Stop consuming. Deliveries handed out stay unacked (RabbitMQ's rule); those claimed and not handed out go
        back to the queue unmarked. An auto-ack consumer's are already taken: they are returned."""
        self._restore_signals()
        consumer = self._consumer
        if consumer is None or self._closing or not consumer._consuming():
            return []
        self._closing = True
        for member in self._members():
            await self.channel._idle.leave(member)
        pending: Optional[Delivery] = None
        if self._next is not None:
            try:
                pending = await asyncio.shield(self._next)
            except Exception:  # its error (the queue deleted, ...) is for no one now
                pending = None
            self._next = None
        taken = await self.channel._worker.run(_cancel, self.channel._channel, consumer, pending)
        return [AsyncDelivery(delivery, self.channel) for delivery in taken]

    async def __aenter__(self) -> "AsyncConsumer":
        return await self.start()

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        if self.channel.is_open:
            await self.cancel()


def hand_out(consumer: Consumer) -> Optional[Delivery]:
    """A delivery already claimed, handed out on the loop: only when no other thread holds the store (a commit
    there must not hold up the loop; the worker hands it out then)."""
    if not consumer._buffer or consumer.finishing:
        return None
    lock = consumer._store.lock
    if not lock.acquire(blocking=False):
        return None
    try:
        return consumer._next_buffered()
    finally:
        lock.release()


def _poll(consuming: Consuming) -> Optional[Delivery]:
    if isinstance(consuming, ConsumerSet):
        return consuming._poll()  # it takes the lock consumer by consumer
    consumer = cast(Consumer, consuming)
    with consumer._store.lock:
        return consumer._poll()


def _cancel(channel: Channel, consumer: Consuming, pending: Optional[Delivery]) -> list[Delivery]:
    taken: list[Delivery] = []
    if pending is not None:
        if pending._channel is None:
            taken.append(pending)  # auto-ack: already out of the queue, so the caller's
        else:
            channel._take_back(pending.delivery_tag)
    return [*taken, *consumer.cancel()]
