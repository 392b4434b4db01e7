"""litemq: RabbitMQ's model (exchanges, bindings, queues, acks) in one SQLite file, no server.

    import litemq
    with litemq.connect("jobs.db") as conn:
        conn.declare_queue("hello")
        conn.publish("", "hello", b"Hello World!")
"""

from .broker import Channel
from .connection import (DEFAULT_CONSUMER_TIMEOUT, DEFAULT_LEASE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES, Connection,
                         connect)
from .errors import (AccessRefused, ChannelClosed, DeliveryError, ExchangeNotFound, LeaseExpired, LiteMQError,
                     MessageTooLarge, NotADatabase, NotFound, PreconditionFailed, PublishRejected, QueueNotFound,
                     ReadOnlyDatabase, ResourceLocked, SchemaError, SchemaTooNew, StorageError, StorageFull,
                     Unroutable)
from .message import Body, Delivery, Properties
from .policy import LEASE_ARGUMENT
from .routing import DELAYED_EXCHANGE
from .topology import QueueInfo

__version__ = "0.1.0"

# Consuming and RPC load on first use (PEP 562): a process that only publishes never needs their imports (signal,
# socket's selectors, a thread's machinery), which took a tenth of a one-shot publisher's start.
_LAZY = {"Consumer": "consumer", "ConsumerSet": "consumer", "RpcClient": "rpc", "RpcServer": "rpc",
         "RpcError": "rpc", "RpcTimeout": "rpc"}
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .consumer import Consumer, ConsumerSet
    from .rpc import RpcClient, RpcError, RpcServer, RpcTimeout


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'litemq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
