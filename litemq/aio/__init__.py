"""litemq's native API for asyncio: the same broker, the same semantics and errors, as coroutines.

    import litemq.aio

    async with litemq.aio.connect("jobs.db") as conn:
        await conn.declare_queue("jobs")
        await conn.publish("", "jobs", b"hello")
        async for delivery in conn.consume("jobs", prefetch=10):
            async with delivery.process():
                print(delivery.body)

Statements run on a worker thread per connection, never on the event loop; an idle consumer waits on the loop
itself (its doorbell through ``loop.add_reader``), holding no thread. Imported on its own: ``import litemq`` does not
import asyncio.
"""

from .channel import AsyncChannel, AsyncConnection, connect
from .consumer import AsyncConsumer
from .consumer_set import AsyncConsumerSet
from .delivery import AsyncDelivery, Processing
from .rpc import AsyncRpcClient, AsyncRpcServer

__all__ = ["connect", "AsyncConnection", "AsyncChannel", "AsyncConsumer", "AsyncConsumerSet", "AsyncDelivery", "Processing",
           "AsyncRpcClient", "AsyncRpcServer"]
