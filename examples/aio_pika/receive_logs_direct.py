"""Tutorial four, the subscriber: prints the logs of the severities named on the command line, forever.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio
import sys

from litemq import aio_pika


async def main():
    severities = sys.argv[1:]
    if not severities:
        sys.stderr.write("Usage: %s [info] [warning] [error]\n" % sys.argv[0])
        sys.exit(1)
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        logs = await channel.declare_exchange("logs2", aio_pika.ExchangeType.DIRECT)
        queue = await channel.declare_queue(exclusive=True)
        for severity in severities:
            await queue.bind(logs, routing_key=severity)
        print(" [*] Waiting for logs. To exit press CTRL+C")
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    print(" [x] %r" % message.body)


asyncio.run(main())
