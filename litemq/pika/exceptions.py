"""pika's exception classes, by the same names and with the same attributes, rooted in litemq's LiteMQError."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import LiteMQError


class AMQPError(LiteMQError):
    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self.args}"


class AMQPConnectionError(AMQPError):
    pass


class ConnectionOpenAborted(AMQPConnectionError):
    pass


class StreamLostError(AMQPConnectionError):
    pass


class IncompatibleProtocolError(AMQPConnectionError):
    pass


class AuthenticationError(AMQPConnectionError):
    pass


class ProbableAuthenticationError(AMQPConnectionError):
    pass


class ProbableAccessDeniedError(AMQPConnectionError):
    pass


class NoFreeChannels(AMQPConnectionError):
    pass


class ConnectionWrongStateError(AMQPConnectionError):
    pass


class ConnectionClosed(AMQPConnectionError):
    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(int(reply_code), str(reply_text))
        self.reply_code = int(reply_code)  # type: ignore[misc]
        self.reply_text = str(reply_text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}: ({self.reply_code}) {self.reply_text!r}"


class ConnectionClosedByBroker(ConnectionClosed):
    pass


class ConnectionClosedByClient(ConnectionClosed):
    pass


class ConnectionBlockedTimeout(AMQPConnectionError):
    pass


class AMQPHeartbeatTimeout(AMQPConnectionError):
    pass


class AMQPChannelError(AMQPError):
    pass


class ChannelWrongStateError(AMQPChannelError):
    pass


class ChannelClosed(AMQPChannelError):
    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(int(reply_code), str(reply_text))
        self.reply_code = int(reply_code)  # type: ignore[misc]
        self.reply_text = str(reply_text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}: ({self.reply_code}) {self.reply_text!r}"


class ChannelClosedByBroker(ChannelClosed):
    pass


class ChannelClosedByClient(ChannelClosed):
    pass


class DuplicateConsumerTag(AMQPChannelError):
    pass


class ConsumerCancelled(AMQPChannelError):
    pass


class UnroutableError(AMQPChannelError):
    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(f"{len(messages)} unroutable message(s) returned")
        self.messages = messages


class NackError(AMQPChannelError):
    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(f"{len(messages)} message(s) NACKed")
        self.messages = messages


class InvalidChannelNumber(AMQPError):
    pass


class ProtocolSyntaxError(AMQPError):
    pass


class UnexpectedFrameError(ProtocolSyntaxError):
    pass


class ProtocolVersionMismatch(ProtocolSyntaxError):
    pass


class BodyTooLongError(ProtocolSyntaxError):
    pass


class InvalidFrameError(ProtocolSyntaxError):
    pass


class InvalidFieldTypeException(ProtocolSyntaxError):
    pass


class UnsupportedAMQPFieldException(ProtocolSyntaxError):
    """A header value pika cannot encode; args are (what was encoded so far, the value), as pika gives them."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}: Unsupported field kind {type(self.args[1])}"


class MethodNotImplemented(AMQPError):
    pass


class ChannelError(LiteMQError):
    pass


class ReentrancyError(LiteMQError):
    pass


class ShortStringTooLong(AMQPError):
    pass


class DuplicateGetOkCallback(ChannelError):
    pass
