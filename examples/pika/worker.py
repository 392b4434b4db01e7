"""Tutorial 3.2.2 (参数), the worker: manual acks (应答参数) and fair dispatch (分发参数) on the durable queue 'hello2'.

The tutorial gives these parts as fragments (``auto_ack=False`` with ``ch.basic_ack(delivery_tag=method.delivery_tag)``,
the durable queue, ``channel.basic_qos(prefetch_count=1)``) and describes two workers, one taking 2 s per message and
the other 1 s; this is those fragments put into the simple consumer, with ``from litemq import pika`` for
``import pika``. How long this worker takes per message is its first argument (default 1 second), so the two
workers of the description are ``worker.py 2`` and ``worker.py 1``.
"""
import sys
import time

from litemq import pika

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello2', durable=True)

def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
    time.sleep(seconds)
    print(" [x] Done")
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='hello2',
                      auto_ack=False,
                      on_message_callback=callback)


print(' [*] Waiting for messages. To exit press CTRL+C')
channel.start_consuming()
