"""Tutorial two, the worker: takes one task at a time from 'hello2' (prefetch 1), works on it for the seconds its
first argument gives (default 1), and acks it when done.

The RabbitMQ tutorial's program written against aio-pika's API, with ``from litemq import aio_pika`` for ``import
aio_pika``: change that line back and it runs on RabbitMQ.
"""
import asyncio
import sys

from litemq import aio_pika

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1


async def on_message(message):
    async with message.process():
        print(" [x] Received %r" % message.body)
        await asyncio.sleep(seconds)
        print(" [x] Done")


async def main():
    connection = await aio_pika.connect("amqp://guest:guest@localhost/")
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        queue = await channel.declare_queue("hello2", durable=True)
        await queue.consume(on_message)
        print(" [*] Waiting for messages. To exit press CTRL+C")
        await asyncio.Future()


asyncio.run(main())
