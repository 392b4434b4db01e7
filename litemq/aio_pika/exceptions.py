"""aio-pika's exception classes (aiormq's, which aio-pika re-exports), by the same names, rooted in LiteMQError.

A broker error closes the channel, as RabbitMQ closes it: the call raises ``ChannelNotFoundEntity`` (404),
``ChannelAccessRefused`` (403), ``ChannelLockedResource`` (405) or ``ChannelPreconditionFailed`` (406), and later
calls on that channel raise ``ChannelInvalidStateError``."""

from __future__ import annotations

import asyncio

from ..errors import LiteMQError


class AMQPException(LiteMQError):
    pass


AMQPError = AMQPException


class AMQPConnectionError(AMQPError, ConnectionError):
    pass


class ConnectionClosed(AMQPConnectionError):
    pass


class AuthenticationError(AMQPConnectionError):
    pass


class ProbableAuthenticationError(AMQPConnectionError):
    pass


class IncompatibleProtocolError(AMQPConnectionError):
    pass


class AMQPChannelError(AMQPError):
    pass


class ChannelClosed(AMQPChannelError):
    """The broker closed the channel; ``reply_code`` and ``reply_text`` say why."""

    def __init__(self, reply_code: int = 0, reply_text: str = "") -> None:
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text


class ChannelAccessRefused(ChannelClosed):
    pass


class ChannelNotFoundEntity(ChannelClosed):
    pass


class ChannelLockedResource(ChannelClosed):
    pass


class ChannelPreconditionFailed(ChannelClosed):
    pass


class DuplicateConsumerTag(ChannelClosed):
    pass


class ProtocolSyntaxError(AMQPError):
    pass


class InvalidFrameError(ProtocolSyntaxError):
    pass


class MethodNotImplemented(AMQPError):
    pass


class DeliveryError(AMQPError):
    """A publish the broker did not take: returned (mandatory, with ``on_return_raises``) or nacked."""


class PublishError(DeliveryError):
    pass


class ChannelInvalidStateError(RuntimeError):
    """The channel (or connection) is closed."""


class MessageProcessError(AMQPError):
    pass


class QueueEmpty(AMQPError, asyncio.QueueEmpty):
    """``queue.get()`` found no message (with ``fail=True``, the default)."""


CLOSES_CHANNEL = {403: ChannelAccessRefused, 404: ChannelNotFoundEntity, 405: ChannelLockedResource,
                  406: ChannelPreconditionFailed}
REPLY_NAMES = {403: "ACCESS_REFUSED", 404: "NOT_FOUND", 405: "RESOURCE_LOCKED", 406: "PRECONDITION_FAILED"}

__all__ = ["AMQPException", "AMQPError", "AMQPConnectionError", "ConnectionClosed", "AuthenticationError",
           "ProbableAuthenticationError", "IncompatibleProtocolError", "AMQPChannelError", "ChannelClosed",
           "ChannelAccessRefused", "ChannelNotFoundEntity", "ChannelLockedResource", "ChannelPreconditionFailed",
           "DuplicateConsumerTag", "ProtocolSyntaxError", "InvalidFrameError", "MethodNotImplemented",
           "DeliveryError", "PublishError", "ChannelInvalidStateError", "MessageProcessError", "QueueEmpty"]
