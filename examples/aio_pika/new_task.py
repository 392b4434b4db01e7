"""Tutorial two, the producer: a persistent task (the command line's words, or 'Hello World!') to the durable
queue 'hello2'.

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
        await channel.declare_queue("hello2", durable=True)
        message = " ".join(sys.argv[1:]) or "Hello World!"
        await channel.default_exchange.publish(
            aio_pika.Message(message.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="hello2")
        print(" [x] Sent %r" % message)


asyncio.run(main())
