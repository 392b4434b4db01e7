"""aio-pika's ``Exchange`` over ``litemq.aio``."""

from __future__ import annotations

import functools
import uuid
from typing import Any, Awaitable, Optional, Protocol, TypeVar, Union

from ..aio import AsyncChannel
from ..errors import Unroutable
from . import exceptions
from .message import ExchangeType, Message

T = TypeVar("T")
Arguments = Optional[dict[str, Any]]


class Scope(Protocol):
    """What an exchange or a queue needs of its channel (``channel.Channel``)."""

    _channel: AsyncChannel
    on_return_raises: bool
    confirmed: int
    """Publishes this channel has had confirmed: the delivery tag of the next confirmation."""

    @property
    def is_closed(self) -> bool:
        ...

    async def _call(self, call: Awaitable[T]) -> T:
        ...

    async def exchange_delete(self, exchange_name: str, timeout: Optional[float] = None, if_unused: bool = False,
                              nowait: bool = False) -> None:
        ...


class Exchange:
    """aio-pika's exchange: ``await exchange.publish(Message(...), routing_key=...)``, ``bind``, ``delete``."""

    def __init__(self, channel: Scope, name: str, type: Union[ExchangeType, str] = ExchangeType.DIRECT, *,
                 durable: bool = False, auto_delete: bool = False, internal: bool = False,
                 arguments: Arguments = None) -> None:
        self.channel = channel
        self.name = name
        self.type = type
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments

    async def publish(self, message: Message, routing_key: str, *, mandatory: bool = True,
                      immediate: bool = False, timeout: Optional[float] = None) -> Any:
        """Store the message in every queue it reaches; once stored, the publisher confirm aio-pika returns
        (``Basic.Ack``). Unroutable with ``mandatory``: returned, which raises ``PublishError`` on a channel opened
        with ``on_return_raises=True`` and is dropped otherwise (and confirmed, as RabbitMQ confirms it)."""
        properties = message.properties
        if not properties.message_id:  # aio-pika (aiormq) gives every message an id, a random UUID's hex
            properties = properties.replace(message_id=uuid.uuid4().hex)
        try:
            await self.channel._call(self.channel._channel.publish(
                self.name, routing_key, message.body, properties,
                mandatory=mandatory and self.channel.on_return_raises))
        except Unroutable as exc:
            raise exceptions.PublishError(f"message returned: {exc}") from exc
        self.channel.confirmed += 1
        return confirmation(self.channel.confirmed)

    async def bind(self, exchange: Union["Exchange", str], routing_key: str = "", *, arguments: Arguments = None,
                   timeout: Optional[float] = None) -> None:
        """Route what ``exchange`` gets with this key to this exchange too (exchange-to-exchange binding)."""
        await self.channel._call(self.channel._channel.bind_exchange(self.name, _name(exchange), routing_key,
                                                                     arguments))

    async def unbind(self, exchange: Union["Exchange", str], routing_key: str = "", arguments: Arguments = None,
                     timeout: Optional[float] = None) -> None:
        await self.channel._call(self.channel._channel.unbind_exchange(self.name, _name(exchange), routing_key,
                                                                       arguments))

    async def delete(self, if_unused: bool = False, timeout: Optional[float] = None) -> None:
        await self.channel.exchange_delete(self.name, if_unused=if_unused)

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, type={str(getattr(self.type, 'value', self.type))!r})"


def _name(exchange: Union[Exchange, str]) -> str:
    return exchange if isinstance(exchange, str) else exchange.name



class Ack:
    """pamqp's ``Basic.Ack`` where pamqp is not installed: the same fields."""

    name = "Basic.Ack"

    def __init__(self, delivery_tag: int, multiple: bool = False) -> None:
        self.delivery_tag = delivery_tag
        self.multiple = multiple

    def __repr__(self) -> str:
        return f"<Basic.Ack delivery_tag={self.delivery_tag}>"


@functools.lru_cache(maxsize=None)
def _ack_class() -> Any:
    try:  # aio-pika's programs check the confirm against pamqp's class, which they import when they do
        from pamqp.commands import Basic
    except ImportError:
        return Ack
    return Basic.Ack


def confirmation(delivery_tag: int) -> Any:
    """What aio-pika's publish returns once RabbitMQ confirms a message: ``Basic.Ack`` with its delivery tag."""
    return _ack_class()(delivery_tag=delivery_tag)
