"""litemq's native API as coroutines: ``async with await litemq.aio.connect(url) as conn``.

Each call runs the blocking API's own method on the connection's worker thread (``worker``), so the semantics,
the checks and the errors are those of ``litemq.Connection`` and ``litemq.Channel``, and the loop never waits for
a statement.
"""

from __future__ import annotations

import os
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping, Optional, Union

from ..broker import Channel
from ..connection import DEFAULT_CONSUMER_TIMEOUT, DEFAULT_LEASE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES, Connection
from ..message import Body, Delivery, Properties
from ..topology import QueueInfo
from .acks import Acks
from .consumer import AsyncConsumer
from .consumer_set import AsyncConsumerSet
from .delivery import AsyncDelivery
from .idle import Idle
from .worker import Worker

if TYPE_CHECKING:
    from ..connection import Synchronous

Arguments = Optional[Mapping[str, Any]]


class AsyncChannel:
    """A scope of consumers and unacked deliveries (``litemq.Channel``), for asyncio."""

    def __init__(self, channel: Channel, worker: Worker, idle: Idle) -> None:
        self._channel = channel
        self._worker = worker
        self._idle = idle
        self._acks = Acks(channel, worker)

    @property
    def number(self) -> int:
        return self._channel.number

    @property
    def is_open(self) -> bool:
        return self._channel.is_open

    @property
    def path(self) -> str:
        return self._channel.path

    # --- the model
    async def declare_exchange(self, exchange: str, exchange_type: str = "direct", *, passive: bool = False,
                               durable: bool = False, auto_delete: bool = False, internal: bool = False,
                               arguments: Arguments = None) -> None:
        await self._run(self._channel.declare_exchange, exchange, exchange_type, passive=passive, durable=durable,
                        auto_delete=auto_delete, internal=internal, arguments=arguments)

    async def delete_exchange(self, exchange: str, *, if_unused: bool = False) -> None:
        await self._run(self._channel.delete_exchange, exchange, if_unused=if_unused)

    async def declare_queue(self, queue: str = "", *, passive: bool = False, durable: bool = False,
                            exclusive: bool = False, auto_delete: bool = False,
                            arguments: Arguments = None) -> QueueInfo:
        info: QueueInfo = await self._run(self._channel.declare_queue, queue, passive=passive, durable=durable,
                                          exclusive=exclusive, auto_delete=auto_delete, arguments=arguments)
        return info

    async def delete_queue(self, queue: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        count: int = await self._run(self._channel.delete_queue, queue, if_unused=if_unused, if_empty=if_empty)
        return count

    async def purge_queue(self, queue: str) -> int:
        count: int = await self._run(self._channel.purge_queue, queue)
        return count

    async def bind_queue(self, queue: str, exchange: str, routing_key: str = "", arguments: Arguments = None
                         ) -> None:
        await self._run(self._channel.bind_queue, queue, exchange, routing_key, arguments)

    async def unbind_queue(self, queue: str, exchange: str, routing_key: str = "", arguments: Arguments = None
                           ) -> None:
        await self._run(self._channel.unbind_queue, queue, exchange, routing_key, arguments)

    async def bind_exchange(self, destination: str, source: str, routing_key: str = "",
                            arguments: Arguments = None) -> None:
        await self._run(self._channel.bind_exchange, destination, source, routing_key, arguments)

    async def unbind_exchange(self, destination: str, source: str, routing_key: str = "",
                              arguments: Arguments = None) -> None:
        await self._run(self._channel.unbind_exchange, destination, source, routing_key, arguments)

    # --- publishing
    async def publish(self, exchange: str, routing_key: str, body: Body, properties: Optional[Properties] = None,
                      *, mandatory: bool = False, delay: Optional[float] = None) -> int:
        """Store a copy in every queue the message reaches; how many (see ``litemq.Channel.publish``)."""
        channel = self._channel
        if self._acks.idle:  # the common case, with no coroutine between: at once on the loop's thread
            done, reached = self._worker.here(channel._store, channel.publish, exchange, routing_key, body,
                                              properties, mandatory=mandatory, delay=delay)
            if done:
                return reached  # type: ignore[return-value]
        reached = await self._write(channel.publish, exchange, routing_key, body, properties, mandatory=mandatory,
                                    delay=delay)
        return reached  # type: ignore[no-any-return]

    async def publish_many(self, exchange: str, routing_key: str, bodies: Iterable[Body],
                           properties: Optional[Properties] = None, *, mandatory: bool = False,
                           delay: Optional[float] = None) -> int:
        reached: int = await self._run(self._channel.publish_many, exchange, routing_key, list(bodies), properties,
                                       mandatory=mandatory, delay=delay)
        return reached

    # --- getting and consuming
    async def get(self, queue: str, *, auto_ack: bool = False, lease_seconds: Optional[float] = None
                  ) -> Optional[AsyncDelivery]:
        """The next message, or None when the queue has none ready."""
        delivery: Optional[Delivery] = await self._run(self._channel.get, queue, auto_ack=auto_ack,
                                                       lease_seconds=lease_seconds)
        return None if delivery is None else AsyncDelivery(delivery, self)

    def consume(self, queue: str, *, prefetch: Optional[int] = None, auto_ack: bool = False,
                exclusive: bool = False, consumer_tag: Optional[str] = None, lease_seconds: Optional[float] = None,
                inactivity_timeout: Optional[float] = None, priority: int = 0) -> AsyncConsumer:
        """A consumer of the queue: ``async for delivery in channel.consume("jobs", prefetch=10):``. It registers
        when first iterated (or on ``await consumer.start()``, or ``async with``)."""
        return AsyncConsumer(self, queue, dict(prefetch=prefetch, auto_ack=auto_ack, exclusive=exclusive,
                                               consumer_tag=consumer_tag, lease_seconds=lease_seconds,
                                               inactivity_timeout=inactivity_timeout, priority=priority))

    def consume_many(self, queues: Iterable[str], *, prefetch: Optional[int] = None, auto_ack: bool = False,
                     exclusive: bool = False, lease_seconds: Optional[float] = None,
                     inactivity_timeout: Optional[float] = None) -> AsyncConsumerSet:
        """Consumers of several queues iterated together, taking turns so no queue starves another:
        ``async for delivery in channel.consume_many(["a", "b"], prefetch=10):`` (see ``litemq.Channel``'s). They
        register when first iterated (or on ``await consumers.start()``, or ``async with``)."""
        return AsyncConsumerSet(self, queues, dict(prefetch=prefetch, auto_ack=auto_ack, exclusive=exclusive,
                                                   lease_seconds=lease_seconds,
                                                   inactivity_timeout=inactivity_timeout))

    async def qos(self, prefetch_count: int = 0, global_qos: bool = False) -> None:
        await self._run(self._channel.qos, prefetch_count, global_qos)

    # --- settling
    async def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge: pipelined (``acks``), returning once the ack is queued, unless ``multiple``. What only its
        commit can tell (LeaseExpired, StorageError) is raised by the channel's next call."""
        if multiple:
            await self._run(self._channel.ack, delivery_tag, multiple)
        else:
            self._acks.ack(delivery_tag)

    async def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        await self._run(self._channel.nack, delivery_tag, multiple, requeue)

    async def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        await self._run(self._channel.reject, delivery_tag, requeue)

    async def ack_and_publish(self, delivery_tag: int, exchange: str, routing_key: str, body: Body,
                              properties: Optional[Properties] = None) -> int:
        """Ack a delivery and publish a message in one transaction: both or neither."""
        reached: int = await self._run(self._channel.ack_and_publish, delivery_tag, exchange, routing_key, body,
                                       properties)
        return reached

    # --- closing
    async def close(self) -> None:
        """Cancel this channel's consumers and return its unacked deliveries to their queues."""
        waiting = self._idle.unwatch(self._channel)  # off their doorbells before they close
        try:
            await self._worker.run(self._channel.close)
        finally:
            for consumer in waiting:
                self._idle.wake(consumer)
        self._acks.raise_failure()  # an ack queued before, failed at its commit

    async def __aenter__(self) -> "AsyncChannel":
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()

    async def _run(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        await self._acks.settled()  # what an ack queued before met is raised here, before this call runs
        return await self._worker.run(partial(method, *args, **kwargs))

    async def _write(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """``_run`` for a method of one write transaction: on the loop's thread where that never waits
        (``Worker.here``)."""
        await self._acks.settled()
        return await self._worker.run(partial(method, *args, **kwargs), store=self._channel._store)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.number} on {self.path}>"


class AsyncConnection(AsyncChannel):
    """An open broker for asyncio (``litemq.Connection``): also its own first channel; ``await channel()`` opens
    more. Its statements run on a thread of its own, stopped when it closes."""

    def __init__(self, connection: Connection, worker: Worker) -> None:
        super().__init__(connection, worker, Idle(connection._session, worker))
        self.connection = connection
        """The blocking connection underneath, for what has no coroutine (its calls block the loop)."""

    async def channel(self) -> AsyncChannel:
        channel = await self._worker.run(self.connection.channel)
        return AsyncChannel(channel, self._worker, self._idle)

    async def close(self) -> None:
        """Close every channel (returning unacked deliveries), delete this connection's exclusive queues."""
        if self._worker.stopped:
            return
        try:
            await self._idle.close()  # off the doorbells before they close
            await self._worker.run(self.connection.close)
        finally:
            self._worker.stop()
        self._acks.raise_failure()

    async def __aenter__(self) -> "AsyncConnection":
        return self


class _Connecting:
    """What ``connect`` returns: ``await`` it for the connection, or ``async with`` it to close at the end."""

    def __init__(self, open_connection: Any) -> None:
        self._open = open_connection
        self._connection: Optional[AsyncConnection] = None

    def __await__(self) -> Generator[Any, None, AsyncConnection]:
        return self._connect().__await__()

    async def _connect(self) -> AsyncConnection:
        worker = Worker("litemq-aio")
        try:
            connection = await worker.run(self._open)
        except BaseException:
            worker.stop()
            raise
        self._connection = AsyncConnection(connection, worker)
        return self._connection

    async def __aenter__(self) -> AsyncConnection:
        return await self._connect()

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        if self._connection is not None:
            await self._connection.close()


def connect(url: Union[str, "os.PathLike[str]", None] = None, *, synchronous: Synchronous = "NORMAL",
            lease_seconds: float = DEFAULT_LEASE_SECONDS, consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT,
            renew_leases: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            busy_timeout: float = 60.0, share_with_group: bool = False) -> _Connecting:
    """Open a broker for asyncio, as ``litemq.connect`` opens it: ``conn = await litemq.aio.connect(url)``, or
    ``async with litemq.aio.connect(url) as conn:`` (the connection is an async context manager too)."""
    return _Connecting(partial(Connection, url, synchronous=synchronous, lease_seconds=lease_seconds,
                               consumer_timeout=consumer_timeout, renew_leases=renew_leases,
                               max_message_bytes=max_message_bytes, busy_timeout=busy_timeout,
                               share_with_group=share_with_group))
