"""Tutorial five, the publisher: one log to the topic exchange 'logs3' (arguments: the routing key, then the
message; default 'europe.weather' and 'info: Hello ERU!').

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
        routing_key = sys.argv[1] if len(sys.argv) > 1 else "europe.weather"
        message = " ".join(sys.argv[2:]) or "info: Hello ERU!"
        await logs.publish(aio_pika.Message(message.encode()), routing_key=routing_key)
        print(" [x] Sent %r" % message)


asyncio.run(main())
