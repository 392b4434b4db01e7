"""Tutorial six, the server: answers each request on 'rpc_queue' with fib(n), replying to the request's
reply_to queue with its correlation_id.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio

from litemq import aio_pika


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def main():
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("rpc_queue")
        print(" [x] Awaiting RPC requests")
        async with queue.iterator() as requests:
            async for request in requests:
                async with request.process(requeue=False):
                    n = int(request.body)
                    print(" [.] fib(%s)" % n)
                    await channel.default_exchange.publish(
                        aio_pika.Message(str(fib(n)).encode(), correlation_id=request.correlation_id),
                        routing_key=request.reply_to)


asyncio.run(main())
