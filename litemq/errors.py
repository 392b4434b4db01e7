"""One exception tree for litemq. Classes that mirror an AMQP condition carry its reply code."""

from __future__ import annotations


class LiteMQError(Exception):
    """Root of every error litemq raises on purpose."""

    reply_code: int = 0


class AccessRefused(LiteMQError):
    """403: the name is reserved (``amq.``) or the operation is not allowed on that object."""

    reply_code = 403


class NotFound(LiteMQError):
    """404: the exchange or queue does not exist."""

    reply_code = 404


class ExchangeNotFound(NotFound):
    """404: the exchange does not exist."""


class QueueNotFound(NotFound):
    """404: the queue does not exist."""


class ResourceLocked(LiteMQError):
    """405: the queue is exclusive to another connection."""

    reply_code = 405


class PreconditionFailed(LiteMQError):
    """406: redeclared with other properties, a queue not empty or in use, or an unknown delivery tag."""

    reply_code = 406


class DeliveryError(PreconditionFailed):
    """406: the delivery was already settled, or its tag is unknown on this channel."""


class LeaseExpired(LiteMQError):
    """The delivery's lease ran out and the message went back to its queue; it was not settled."""


class Unroutable(LiteMQError):
    """312 NO_ROUTE: a mandatory message reached no queue (pika's basic.return); nothing was stored."""

    reply_code = 312

    def __init__(self, message: str, *, exchange: str = "", routing_key: str = "") -> None:
        super().__init__(message)
        self.exchange = exchange
        self.routing_key = routing_key


class PublishRejected(LiteMQError):
    """A queue's length limit refused the message (``x-overflow: reject-publish``), as RabbitMQ nacks it; the
    queues in ``stored`` have it all the same."""

    def __init__(self, message: str, *, rejected: list[str], stored: list[str]) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.stored = stored


class MessageTooLarge(LiteMQError):
    """The body is larger than the connection's maximum message size."""


class ChannelClosed(LiteMQError):
    """The channel or connection is closed."""


class StorageError(LiteMQError):
    """The file cannot serve as a litemq store: not SQLite, read-only, full, or too old an SQLite."""


class NotADatabase(StorageError):
    """The file exists but is not an SQLite database."""


class ReadOnlyDatabase(StorageError):
    """The file or its directory cannot be written."""


class StorageFull(StorageError):
    """The disk (or SQLite's page limit) is full; the transaction was rolled back."""


class SchemaError(StorageError):
    """The file's schema revision is not one this litemq can use."""


class SchemaTooNew(SchemaError):
    """The file was written by a newer litemq."""


class ServerUnreachable(StorageError):
    """The database server cannot be reached (refused, timed out, unknown host) or dropped the connection."""


class DatabaseNotFound(StorageError):
    """The server has no database of that name."""
