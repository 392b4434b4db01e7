"""aio-pika's ``Queue`` and ``QueueIterator`` over ``litemq.aio``'s consumers."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Awaitable, Callable, Optional, Union

from ..aio import AsyncConsumer
from ..log import logger
from ..topology import QueueInfo
from . import exceptions
from .exchange import Arguments, Exchange, Scope, _name
from .message import IncomingMessage

Callback = Callable[[IncomingMessage], Awaitable[Any]]


class DeclarationResult:
    def __init__(self, message_count: int, consumer_count: int) -> None:
        self.message_count = message_count
        self.consumer_count = consumer_count


class Queue:
    """aio-pika's queue: ``bind``, ``consume``, ``iterator``, ``get``, ``purge``, ``delete``."""

    def __init__(self, channel: Scope, info: QueueInfo, *, durable: bool, exclusive: bool, auto_delete: bool,
                 arguments: Arguments, passive: bool) -> None:
        self.channel = channel
        self.name = info.queue
        self.durable = durable
        self.exclusive = exclusive
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.passive = passive
        self.declaration_result = DeclarationResult(info.message_count, info.consumer_count)
        self._consumers: dict[str, tuple[AsyncConsumer, "asyncio.Task[None]"]] = {}

    async def bind(self, exchange: Union[Exchange, str], routing_key: Optional[str] = None, *,
                   arguments: Arguments = None, timeout: Optional[float] = None) -> None:
        """Bind to the exchange; without a routing key, with the queue's name (aio-pika's default)."""
        key = self.name if routing_key is None else routing_key
        await self.channel._call(self.channel._channel.bind_queue(self.name, _name(exchange), key, arguments))

    async def unbind(self, exchange: Union[Exchange, str], routing_key: Optional[str] = None,
                     arguments: Arguments = None, timeout: Optional[float] = None) -> None:
        key = self.name if routing_key is None else routing_key
        await self.channel._call(self.channel._channel.unbind_queue(self.name, _name(exchange), key, arguments))

    async def consume(self, callback: Callback, no_ack: bool = False, exclusive: bool = False,
                      arguments: Arguments = None, consumer_tag: Optional[str] = None,
                      timeout: Optional[float] = None) -> str:
        """Call ``await callback(message)`` for each message, each in a task of its own (as aio-pika does); the
        prefetch (``set_qos``) bounds how many run at once. Returns the consumer tag."""
        consumer = await self._start(no_ack, exclusive, arguments, consumer_tag)
        tag = str(consumer.consumer_tag)
        self._consumers[tag] = (consumer, asyncio.get_running_loop().create_task(self._deliver(consumer, callback,
                                                                                              no_ack)))
        return tag

    async def _start(self, no_ack: bool, exclusive: bool, arguments: Arguments,
                     consumer_tag: Optional[str]) -> AsyncConsumer:
        priority = int((arguments or {}).get("x-priority", 0))
        consumer = self.channel._channel.consume(self.name, auto_ack=no_ack, exclusive=exclusive,
                                                 consumer_tag=consumer_tag, priority=priority)
        await self.channel._call(consumer.start())
        return consumer

    async def _deliver(self, consumer: AsyncConsumer, callback: Callback, no_ack: bool) -> None:
        running: set["asyncio.Task[Any]"] = set()
        async for delivery in consumer:
            task = asyncio.get_running_loop().create_task(_call(callback, IncomingMessage(delivery, no_ack)))
            running.add(task)
            task.add_done_callback(running.discard)

    async def cancel(self, consumer_tag: str, timeout: Optional[float] = None, nowait: bool = False) -> None:
        consumer, task = self._consumers.pop(consumer_tag, (None, None))
        if consumer is not None and task is not None:
            await consumer.cancel()
            task.cancel()

    async def get(self, *, no_ack: bool = False, fail: bool = True, timeout: Optional[float] = 5
                  ) -> Optional[IncomingMessage]:
        """The next message (basic.get); QueueEmpty (``fail``) or None when there is none."""
        delivery = await self.channel._call(self.channel._channel.get(self.name, auto_ack=no_ack))
        if delivery is None:
            if fail:
                raise exceptions.QueueEmpty()
            return None
        return IncomingMessage(delivery, no_ack)

    async def purge(self, no_wait: bool = False, timeout: Optional[float] = None) -> DeclarationResult:
        """Remove the ready messages; ``.message_count`` says how many."""
        removed = await self.channel._call(self.channel._channel.purge_queue(self.name))
        return DeclarationResult(removed, 0)

    async def delete(self, *, if_unused: bool = True, if_empty: bool = True,
                     timeout: Optional[float] = None) -> DeclarationResult:
        """Delete the queue (by default, aio-pika's, only when it is unused and empty)."""
        removed = await self.channel._call(self.channel._channel.delete_queue(self.name, if_unused=if_unused,
                                                                              if_empty=if_empty))
        return DeclarationResult(removed, 0)

    def iterator(self, **kwargs: Any) -> "QueueIterator":
        """``async with queue.iterator() as messages: async for message in messages:``. ``timeout`` (seconds):
        an idle iterator closes and raises ``asyncio.TimeoutError``, as aio-pika's does."""
        return QueueIterator(self, **kwargs)

    def __repr__(self) -> str:
        return f"Queue({self.name})"


RobustQueue = Queue


class QueueIterator:
    def __init__(self, queue: Queue, **kwargs: Any) -> None:
        self._queue = queue
        self._timeout: Optional[float] = kwargs.pop("timeout", None)
        self._kwargs = kwargs
        self._consumer: Optional[AsyncConsumer] = None
        self._closed = False

    async def consume(self) -> None:
        if self._consumer is None:
            self._consumer = await self._queue._start(bool(self._kwargs.get("no_ack", False)),
                                                      bool(self._kwargs.get("exclusive", False)),
                                                      self._kwargs.get("arguments"), self._kwargs.get("consumer_tag"))

    def __aiter__(self) -> "QueueIterator":
        return self

    async def __aenter__(self) -> "QueueIterator":
        await self.consume()
        return self

    async def __anext__(self) -> IncomingMessage:
        if self._closed:
            raise StopAsyncIteration
        await self.consume()
        assert self._consumer is not None
        delivery = await self._consumer.get(self._timeout)
        if delivery is None:
            if self._timeout is not None and not self._closed:
                await self.close()
                raise asyncio.TimeoutError
            raise StopAsyncIteration
        return IncomingMessage(delivery, bool(self._kwargs.get("no_ack", False)))

    async def close(self) -> None:
        """Cancel the consumer; what it claimed and did not hand out goes back to the queue."""
        if not self._closed:
            self._closed = True
            if self._consumer is not None and not self._queue.channel.is_closed:
                await self._consumer.cancel()

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()


async def _call(callback: Callback, message: IncomingMessage) -> None:
    try:
        await callback(message)
    except Exception:
        logger().exception("litemq: the consumer callback for message %d failed", message.delivery_tag)
