"""Tutorial one, the producer: one message to the queue 'hello'.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio

from litemq import aio_pika


async def main():
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("hello")
        await channel.default_exchange.publish(aio_pika.Message(body=b"Hello World!"), routing_key="hello")
        print(" [x] Sent 'Hello World!'")


asyncio.run(main())
