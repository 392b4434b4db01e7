"""Tutorial three, the subscriber: its own exclusive queue bound to 'logs'; prints every log, forever.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio

from litemq import aio_pika


async def main():
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        logs = await channel.declare_exchange("logs", aio_pika.ExchangeType.FANOUT)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(logs)
        print(" [*] Waiting for logs. To exit press CTRL+C")
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    print(" [x] %r" % message.body)


asyncio.run(main())
