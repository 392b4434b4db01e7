"""Tutorial five, the subscriber: prints the logs whose keys match the patterns on the command line (default
'#.news'), forever.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio
import sys

from litemq import aio_pika


async def main():
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        logs = await channel.declare_exchange("logs3", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(exclusive=True)
        for binding_key in sys.argv[1:] or ["#.news"]:
            await queue.bind(logs, routing_key=binding_key)
        print(" [*] Waiting for logs. To exit press CTRL+C")
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    print(" [x] %r" % message.body)


asyncio.run(main())
