"""Tutorial six, the client: asks the server on 'rpc_queue' for fib(n) (n: the first argument, default 30) and
prints it. Replies come to an exclusive queue of its own, matched to requests by correlation_id.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio
import sys
import uuid

from litemq import aio_pika


class FibonacciRpcClient:
    async def connect(self):
        self.connection = await aio_pika.connect("amqp://guest:guest@localhost/")
        self.channel = await self.connection.channel()
        self.callback_queue = await self.channel.declare_queue(exclusive=True)
        self.futures = {}
        await self.callback_queue.consume(self.on_response, no_ack=True)
        return self

    async def on_response(self, message):
        future = self.futures.pop(message.correlation_id, None)
        if future is not None:
            future.set_result(message.body)

    async def call(self, n):
        correlation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self.futures[correlation_id] = future
        await self.channel.default_exchange.publish(
            aio_pika.Message(str(n).encode(), correlation_id=correlation_id,
                             reply_to=self.callback_queue.name),
            routing_key="rpc_queue")
        return int(await future)


async def main():
    fibonacci_rpc = await FibonacciRpcClient().connect()
    response = await fibonacci_rpc.call(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
    print(" [.] Got %r" % response)
    await fibonacci_rpc.connection.close()


asyncio.run(main())
