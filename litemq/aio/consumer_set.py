"""Several queues consumed together in one asyncio task: ``async for delivery in channel.consume_many([...])``.

It drives the blocking ``ConsumerSet`` as ``AsyncConsumer`` drives one ``Consumer``: the same turns (each queue
with a delivery ready gives one before any gives a second), claims on the connection's worker thread, and one
wait on the loop for all of its queues, with the connection's other idle consumers."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from ..consumer import ConsumerSet
from ..message import Delivery
from .consumer import AsyncConsumer, Scope, hand_out


class AsyncConsumerSet(AsyncConsumer):
    """Consumers of several queues, iterated together (``AsyncChannel.consume_many``): ``async for``, ``await
    get(timeout)``, ``await cancel()``, ``finish()`` and ``stop_on`` as for one queue's consumer. A consumer whose
    queue is deleted is cancelled (a warning is logged) and the rest go on; when it was the last, QueueNotFound is
    raised."""

    def __init__(self, channel: Scope, queues: Iterable[str], options: dict[str, Any]) -> None:
        if isinstance(queues, str):
            raise TypeError(f"queues must be a list of queue names, not one str ({queues!r}): use consume()")
        super().__init__(channel, "", options)
        self.queues = list(queues)

    async def start(self) -> "AsyncConsumerSet":
        """Register the consumers if they are not yet (iterating does it too); raises what ``consume_many``
        raises, having registered none."""
        if self._consumer is None:
            channel, queues, options = self.channel._channel, self.queues, self._options
            self._consumer = await self.channel._worker.run(lambda: channel.consume_many(queues, **options))
        return self

    def _hand_out(self) -> Optional[Delivery]:
        # On the loop only when the consumer whose turn it is has a delivery claimed already; the turns are the
        # blocking set's, so anything else is its poll, on the worker.
        consumers = self._consumer
        assert isinstance(consumers, ConsumerSet)
        index = consumers._turn % len(consumers.consumers)
        consumer = consumers.consumers[index]
        if not consumer.active:
            return None
        delivery = hand_out(consumer)
        if delivery is not None:
            consumers._turn = index + 1
        return delivery

