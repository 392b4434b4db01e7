"""A delivery as an asyncio program holds it: the message, ``await`` to settle it, and ``process()``, which acks
when its block succeeds and rejects when it raises (aio-pika's ``message.process`` rules)."""

from __future__ import annotations

from types import TracebackType
from typing import Generic, Optional, Protocol, TypeVar

from ..log import logger
from ..message import Delivery, Properties


class Settles(Protocol):
    """What settles an asyncio delivery: its channel (``AsyncChannel``)."""

    async def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        ...

    async def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        ...

    async def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        ...


class AsyncDelivery:
    """A message handed to an asyncio consumer or to ``get``; the fields of ``litemq.Delivery``. Settle it with
    ``await delivery.ack()``, ``nack()`` or ``reject()``, or inside ``async with delivery.process():``."""

    __slots__ = ("delivery", "body", "properties", "exchange", "routing_key", "queue", "delivery_tag", "redelivered",
                 "delivery_count", "consumer_tag", "message_count", "processed", "_channel")

    def __init__(self, delivery: Delivery, channel: Settles) -> None:
        self.delivery = delivery
        """The same message as the blocking API's ``Delivery``."""
        self.body: bytes = delivery.body
        self.properties: Properties = delivery.properties
        self.exchange: str = delivery.exchange
        self.routing_key: str = delivery.routing_key
        self.queue: str = delivery.queue
        self.delivery_tag: int = delivery.delivery_tag
        self.redelivered: bool = delivery.redelivered
        self.delivery_count: int = delivery.delivery_count
        self.consumer_tag: Optional[str] = delivery.consumer_tag
        self.message_count: Optional[int] = delivery.message_count
        self.processed = delivery._channel is None
        """Settled already (an auto-acked delivery is settled from the start)."""
        self._channel = channel

    async def ack(self) -> None:
        """Acknowledge: the message is done and deleted."""
        await self._settle("ack", False)

    async def nack(self, requeue: bool = True) -> None:
        """Back to its place in the queue, or dropped (or dead-lettered) with ``requeue=False``."""
        await self._settle("nack", requeue)

    async def reject(self, requeue: bool = True) -> None:
        """As ``nack``: back to its place, or dropped with ``requeue=False``."""
        await self._settle("reject", requeue)

    async def _settle(self, how: str, requeue: bool) -> None:
        if self.delivery._channel is None:
            raise ValueError("this delivery was auto-acked; there is nothing to settle")
        if how == "ack":
            await self._channel.ack(self.delivery_tag)
        elif how == "nack":
            await self._channel.nack(self.delivery_tag, requeue=requeue)
        else:
            await self._channel.reject(self.delivery_tag, requeue=requeue)
        self.processed = True

    def process(self, requeue: bool = False, reject_on_redelivered: bool = False,
                ignore_processed: bool = False) -> "Processing[AsyncDelivery]":
        """``async with delivery.process():`` acks when the block ends normally and rejects when it raises: with
        ``requeue`` back to the queue, else dropped or dead-lettered (the default, as in aio-pika); with
        ``reject_on_redelivered`` a redelivered message is dropped rather than requeued. With
        ``ignore_processed`` a block that settled the delivery itself is left alone."""
        return Processing(self, requeue=requeue, reject_on_redelivered=reject_on_redelivered,
                          ignore_processed=ignore_processed)

    def __repr__(self) -> str:
        return f"AsyncDelivery({self.delivery!r})"


class Processable(Protocol):
    """What ``Processing`` settles: an ``AsyncDelivery``, or the aio-pika facade's ``IncomingMessage``."""

    processed: bool
    redelivered: bool
    delivery_tag: int
    routing_key: str

    async def ack(self) -> None:
        ...

    async def reject(self, requeue: bool = ...) -> None:
        ...


P = TypeVar("P", bound=Processable)


class Processing(Generic[P]):
    """What ``AsyncDelivery.process()`` returns."""

    def __init__(self, delivery: P, *, requeue: bool, reject_on_redelivered: bool,
                 ignore_processed: bool) -> None:
        self.delivery = delivery
        self.requeue = requeue
        self.reject_on_redelivered = reject_on_redelivered
        self.ignore_processed = ignore_processed

    async def __aenter__(self) -> P:
        return self.delivery

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        delivery = self.delivery
        if self.ignore_processed and delivery.processed:
            return
        if exc_type is None:
            await delivery.ack()
            return
        requeue = self.requeue and not (self.reject_on_redelivered and delivery.redelivered)
        try:
            await delivery.reject(requeue=requeue)
        except Exception:  # the block's own exception is the one to see; this one is logged
            logger().exception("litemq: rejecting delivery %d (routing key %r) after a failed block failed too",
                               delivery.delivery_tag, delivery.routing_key)

