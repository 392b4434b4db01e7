"""Request and reply for asyncio, as ``litemq.rpc`` does it: a client that awaits replies matched by
``correlation_id`` on its exclusive reply queue, and a server whose reply and ack are one transaction."""

from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable, Optional, Union

from ..errors import Unroutable
from ..message import Body, Delivery, Properties
from ..rpc import no_server, reply_body, reply_to, request_properties
from ..timing import check_seconds
from .channel import AsyncChannel, AsyncConnection
from .consumer import AsyncConsumer
from .delivery import AsyncDelivery

Handler = Callable[[AsyncDelivery], Union[Body, Awaitable[Body]]]


class AsyncRpcClient:
    """``reply = await client.call("rpc_queue", b"30")``; ``async with AsyncRpcClient(conn) as client:``."""

    def __init__(self, connection: AsyncConnection, *, exchange: str = "") -> None:
        self._connection = connection
        self.exchange = exchange
        self.reply_queue = ""
        self._channel: Optional[AsyncChannel] = None
        self._pending: dict[str, "asyncio.Future[Delivery]"] = {}
        self._reader: Optional["asyncio.Task[None]"] = None
        self._starting = asyncio.Lock()

    async def start(self) -> "AsyncRpcClient":
        """Declare the reply queue and start reading it (the first call does it too)."""
        async with self._starting:
            if self._channel is None:
                channel = await self._connection.channel()
                self.reply_queue = (await channel.declare_queue("", exclusive=True, auto_delete=True)).queue
                consumer = await channel.consume(self.reply_queue, auto_ack=True).start()
                self._reader = asyncio.get_running_loop().create_task(self._read(consumer))
                self._channel = channel
        return self

    async def call(self, routing_key: str, body: Body, *, timeout: Optional[float] = 30.0,
                   properties: Optional[Properties] = None) -> bytes:
        """Publish a request to ``routing_key`` and return the reply's body: RpcTimeout after ``timeout`` seconds
        (None: no limit), RpcError when the server's handler raised, Unroutable at once when no queue took it."""
        check_seconds("timeout", timeout, forever=True)
        await self.start()
        assert self._channel is not None
        correlation_id, request = request_properties(properties, self.reply_queue)
        future: "asyncio.Future[Delivery]" = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            try:
                await self._channel.publish(self.exchange, routing_key, body, request, mandatory=True)
            except Unroutable:
                raise no_server(self.exchange, routing_key, self._channel.path) from None
            done, _ = await asyncio.wait([future], timeout=timeout)
        finally:
            self._pending.pop(correlation_id, None)
        return reply_body(future.result() if done else None, routing_key, timeout, self._channel.path)

    async def _read(self, consumer: AsyncConsumer) -> None:
        async for reply in consumer:
            waiting = self._pending.get(reply.properties.correlation_id or "")
            if waiting is not None and not waiting.done():  # anything else is late or stray: dropped
                waiting.set_result(reply.delivery)

    async def close(self) -> None:
        """Stop reading replies and close the client's channel; its reply queue goes with it."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncRpcClient":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncRpcServer:
    """Serves ``handler(request) -> reply body`` (a coroutine function, or a plain one) on a queue, answering each
    request once: ``await AsyncRpcServer(conn, "rpc_queue", handler).serve()``."""

    def __init__(self, connection: AsyncConnection, queue: str, handler: Handler, *, prefetch: int = 1,
                 declare: bool = True) -> None:
        self._connection = connection
        self.queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._declare = declare
        self._channel: Optional[AsyncChannel] = None
        self._consumer: Optional[AsyncConsumer] = None

    async def start(self) -> "AsyncRpcServer":
        if self._channel is None:
            channel = await self._connection.channel()
            if self._declare:
                await channel.declare_queue(self.queue)
            self._consumer = await channel.consume(self.queue, prefetch=self._prefetch).start()
            self._channel = channel
        return self

    async def serve(self, *, inactivity_timeout: Optional[float] = None, limit: Optional[int] = None) -> int:
        """Answer requests until stopped, idle for ``inactivity_timeout`` seconds, or ``limit`` are answered;
        returns how many were answered."""
        check_seconds("inactivity_timeout", inactivity_timeout, forever=True)
        await self.start()
        assert self._consumer is not None
        self._consumer.inactivity_timeout = inactivity_timeout
        answered = 0
        async for request in self._consumer:
            await self.answer(request)
            answered += 1
            if limit is not None and answered >= limit:
                break
        return answered

    async def answer(self, request: AsyncDelivery) -> None:
        """Run the handler on one request and reply, atomically with the request's ack."""
        assert self._channel is not None
        outcome: Union[Body, Exception]
        try:
            returned = self._handler(request)
            outcome = await returned if inspect.isawaitable(returned) else returned
        except Exception as exc:
            outcome = exc
        body, reply = reply_to(request.delivery, outcome, self.queue)
        if request.properties.reply_to:
            await self._channel.ack_and_publish(request.delivery_tag, "", request.properties.reply_to, body, reply)
        else:
            await request.ack()

    def finish(self) -> None:
        """Warm shutdown: serve returns once the request in hand is answered."""
        if self._consumer is not None:
            self._consumer.finish()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncRpcServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
