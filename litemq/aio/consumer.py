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
from types import TracebackType
from typing import Any, Optional, Protocol

from ..broker import Channel
from ..consumer import Consumer
from ..message import Delivery
from ..timing import check_seconds
from .acks import Acks
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


class AsyncConsumer:
    """A subscription to a queue, for asyncio. ``async for`` it (or ``await get(timeout)``); ``await cancel()``
    to stop, ``finish()`` for a warm shutdown; ``async with`` cancels it at the end of the block."""

    def __init__(self, channel: Scope, queue: str, options: dict[str, Any]) -> None:
        check_seconds("inactivity_timeout", options.get("inactivity_timeout"), forever=True)
        self.channel = channel
        self.queue = queue
        self.inactivity_timeout: Optional[float] = options.pop("inactivity_timeout", None)
        self._options = options
        self._consumer: Optional[Consumer] = None
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
        return None if self._consumer is None else self._consumer.consumer_tag

    @property
    def active(self) -> bool:
        return self._consumer is not None and self._consumer.active and not self._closing

    def __aiter__(self) -> "AsyncConsumer":
        return self

    async def __anext__(self) -> AsyncDelivery:
        delivery = await self.get(self.inactivity_timeout)
        if delivery is None:
            if self._consumer is not None and self._consumer.finishing:
                await self.cancel()  # what was claimed and not handed out goes back unmarked
            raise StopAsyncIteration
        return delivery

    async def get(self, timeout: Optional[float] = None) -> Optional[AsyncDelivery]:
        """The next delivery, waiting up to ``timeout`` seconds (forever when None); None if none came, when the
        consumer is cancelled, or at once when it is finishing."""
        check_seconds("timeout", timeout, forever=True)
        self.channel._acks.raise_failure()  # an ack queued before, failed at its commit
        await self.start()
        if self._next is None:
            if not self.active:
                return None
            self._next = asyncio.get_running_loop().create_task(self._fetch())
        task = self._next
        if not task.done():
            # Waiting does not cancel the fetch: a cancelled or timed-out await leaves it for the next one.
            await asyncio.wait([task], timeout=timeout)
            if not task.done():
                return None
        self._next = None
        delivery = task.result()
        return None if delivery is None else AsyncDelivery(delivery, self.channel)

    async def _fetch(self) -> Optional[Delivery]:
        consumer = self._consumer
        assert consumer is not None
        worker, idle = self.channel._worker, self.channel._idle
        while consumer.active and not self._closing and not idle.closed:
            delivery = _hand_out(consumer)
            if delivery is None:
                delivery = await worker.run(_poll, consumer)
            if delivery is not None or consumer.finishing:
                return delivery
            await idle.wait(consumer, None)
        return None

    def finish(self) -> None:
        """Warm shutdown: iteration ends before its next delivery (the one in hand is the caller's to finish and
        ack); ``cancel()`` then returns what was claimed and not handed out to the queue, unmarked."""
        if self._consumer is not None:
            self._consumer.finishing = True
            self.channel._idle.wake(self._consumer)

    async def cancel(self) -> list[AsyncDelivery]:
        """Stop consuming. Deliveries handed out stay unacked (RabbitMQ's rule); those claimed and not handed out go
        back to the queue unmarked. An auto-ack consumer's are already taken: they are returned."""
        consumer = self._consumer
        if consumer is None or self._closing or not consumer.active:
            return []
        self._closing = True
        await self.channel._idle.leave(consumer)
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


def _hand_out(consumer: Consumer) -> Optional[Delivery]:
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


def _poll(consumer: Consumer) -> Optional[Delivery]:
    with consumer._store.lock:
        return consumer._poll()


def _cancel(channel: Channel, consumer: Consumer, pending: Optional[Delivery]) -> list[Delivery]:
    taken: list[Delivery] = []
    if pending is not None:
        if pending._channel is None:
            taken.append(pending)  # auto-ack: already out of the queue, so the caller's
        else:
            channel._take_back(pending.delivery_tag)
    return [*taken, *consumer.cancel()]
