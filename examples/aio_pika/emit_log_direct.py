"""Tutorial four, the publisher: one log to the direct exchange 'logs2' with its severity as the routing key
(arguments: severity, then the message; default 'info' and 'info: Hello Yuan!').

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
        logs = await channel.declare_exchange("logs2", aio_pika.ExchangeType.DIRECT)
        severity = sys.argv[1] if len(sys.argv) > 1 else "info"
        message = " ".join(sys.argv[2:]) or "info: Hello Yuan!"
        await logs.publish(aio_pika.Message(message.encode()), routing_key=severity)
        print(" [x] Sent %r" % message)


asyncio.run(main())
