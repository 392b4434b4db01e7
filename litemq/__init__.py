"""litemq: RabbitMQ's model (exchanges, bindings, queues, acks) in one SQLite file, no server.

    import litemq
    with litemq.connect("jobs.db") as conn:
        conn.declare_queue("hello")
        conn.publish("", "hello", b"Hello World!")
"""

from .broker import Channel
from .connection import (DEFAULT_CONSUMER_TIMEOUT, DEFAULT_LEASE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES, Connection,
                         connect)
from .consumer import Consumer, ConsumerSet
from .errors import (AccessRefused, ChannelClosed, DeliveryError, ExchangeNotFound, LeaseExpired, LiteMQError,
                     MessageTooLarge, NotADatabase, NotFound, PreconditionFailed, PublishRejected, QueueNotFound,
                     ReadOnlyDatabase, ResourceLocked, SchemaError, SchemaTooNew, StorageError, StorageFull,
                     Unroutable)
from .message import Body, Delivery, Properties
from .rpc import RpcClient, RpcError, RpcServer, RpcTimeout
from .policy import LEASE_ARGUMENT
from .routing import DELAYED_EXCHANGE
from .topology import QueueInfo

__version__ = "0.1.0"

__all__ = [
    # Connecting
    "connect", "Connection", "Channel", "Consumer", "ConsumerSet",
    # Values
    "Properties", "Delivery", "QueueInfo", "Body",
    # Request and reply
    "RpcClient", "RpcServer", "RpcError", "RpcTimeout",
    # Settings
    "DEFAULT_LEASE_SECONDS", "DEFAULT_CONSUMER_TIMEOUT", "DEFAULT_MAX_MESSAGE_BYTES", "LEASE_ARGUMENT",
    "DELAYED_EXCHANGE",
    # Errors
    "LiteMQError", "AccessRefused", "NotFound", "ExchangeNotFound", "QueueNotFound", "ResourceLocked",
    "PreconditionFailed", "DeliveryError", "LeaseExpired", "Unroutable", "PublishRejected", "MessageTooLarge", "ChannelClosed", "StorageError",
    "NotADatabase", "ReadOnlyDatabase", "StorageFull", "SchemaError", "SchemaTooNew",
    "__version__",
]
