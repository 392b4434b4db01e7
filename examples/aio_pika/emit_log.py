"""Tutorial three, the publisher: one log to the fanout exchange 'logs' (the command line's words, or
'info: Hello World!').

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
        logs = await channel.declare_exchange("logs", aio_pika.ExchangeType.FANOUT)
        message = " ".join(sys.argv[1:]) or "info: Hello World!"
        await logs.publish(aio_pika.Message(message.encode()), routing_key="")
        print(" [x] Sent %r" % message)


asyncio.run(main())
