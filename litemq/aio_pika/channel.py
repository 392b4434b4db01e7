"""aio-pika's ``Connection`` and ``Channel`` over ``litemq.aio``.

A broker error raises aio-pika's class for its reply code and closes the channel, as RabbitMQ closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Awaitable, Optional, TypeVar, Union

from ..aio import AsyncChannel, AsyncConnection
from ..errors import LiteMQError
from . import exceptions
from .exchange import Arguments, Exchange
from .message import ExchangeType
from .queue import Queue

T = TypeVar("T")


class Connection:
    """aio-pika's connection: ``async with connection:``, ``await connection.channel()``."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.is_closed = False

    async def channel(self, channel_number: Optional[int] = None, publisher_confirms: bool = True,
                      on_return_raises: bool = False) -> "Channel":
        self._check()
        return Channel(self, await self._connection.channel(), on_return_raises)

    async def close(self, exc: Optional[BaseException] = None) -> None:
        if not self.is_closed:
            self.is_closed = True
            await self._connection.close()

    async def ready(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.is_closed:
            raise exceptions.ChannelInvalidStateError("the connection is closed")

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()


RobustConnection = Connection


class Channel:
    """aio-pika's channel: declare exchanges and queues, ``default_exchange``, ``set_qos``."""

    def __init__(self, connection: Connection, channel: AsyncChannel, on_return_raises: bool) -> None:
        self.connection = connection
        self._channel = channel
        self.on_return_raises = on_return_raises
        self.confirmed = 0
        self._closed = False
        self.default_exchange = Exchange(self, "", ExchangeType.DIRECT)

    @property
    def is_closed(self) -> bool:
        return self._closed or self.connection.is_closed

    @property
    def number(self) -> int:
        return self._channel.number

    async def declare_exchange(self, name: str, type: Union[ExchangeType, str] = ExchangeType.DIRECT, *,
                               durable: bool = False, auto_delete: bool = False, internal: bool = False,
                               passive: bool = False, arguments: Arguments = None,
                               timeout: Optional[float] = None) -> "Exchange":
        kind = ExchangeType(type).value if not isinstance(type, str) or type in ExchangeType._value2member_map_ \
            else type
        await self._call(self._channel.declare_exchange(name, str(kind), passive=passive, durable=durable,
                                                        auto_delete=auto_delete, internal=internal,
                                                        arguments=arguments))
        return Exchange(self, name, kind, durable=durable, auto_delete=auto_delete, internal=internal,
                        arguments=arguments)

    async def get_exchange(self, name: str, *, ensure: bool = True) -> "Exchange":
        if ensure:
            return await self.declare_exchange(name, passive=True)
        return Exchange(self, name, ExchangeType.DIRECT)

    async def declare_queue(self, name: Optional[str] = None, *, durable: bool = False, exclusive: bool = False,
                            passive: bool = False, auto_delete: bool = False, arguments: Arguments = None,
                            timeout: Optional[float] = None) -> Queue:
        info = await self._call(self._channel.declare_queue(name or "", passive=passive, durable=durable,
                                                            exclusive=exclusive, auto_delete=auto_delete,
                                                            arguments=arguments))
        return Queue(self, info, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                     arguments=arguments, passive=passive)

    async def get_queue(self, name: str, *, ensure: bool = True) -> Queue:
        return await self.declare_queue(name, passive=True)

    async def set_qos(self, prefetch_count: int = 0, prefetch_size: int = 0, global_: bool = False,
                      timeout: Optional[float] = None, all_channels: Optional[bool] = None) -> None:
        await self._call(self._channel.qos(prefetch_count, bool(global_ or all_channels)))

    async def queue_delete(self, queue_name: str, timeout: Optional[float] = None, if_unused: bool = False,
                           if_empty: bool = False, nowait: bool = False) -> None:
        await self._call(self._channel.delete_queue(queue_name, if_unused=if_unused, if_empty=if_empty))

    async def exchange_delete(self, exchange_name: str, timeout: Optional[float] = None, if_unused: bool = False,
                              nowait: bool = False) -> None:
        await self._call(self._channel.delete_exchange(exchange_name, if_unused=if_unused))

    async def close(self, exc: Optional[BaseException] = None) -> None:
        if not self._closed:
            self._closed = True
            if not self.connection.is_closed:
                await self._channel.close()

    async def _call(self, call: Awaitable[T]) -> T:
        """Await a litemq call as aio-pika's: a broker error closes the channel and raises aio-pika's class."""
        if self.is_closed:
            close = getattr(call, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning
            raise exceptions.ChannelInvalidStateError(f"channel {self.number} is closed")
        try:
            return await call
        except LiteMQError as exc:
            closing = exceptions.CLOSES_CHANNEL.get(exc.reply_code)
            if closing is None:
                raise
            await self.close()
            raise closing(exc.reply_code, f"{exceptions.REPLY_NAMES[exc.reply_code]} - {exc}") from exc

    async def __aenter__(self) -> "Channel":
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()


RobustChannel = Channel
