"""Tutorial 3.2.1 (简单模式), the producer: one message to the queue 'hello'.

The tutorial's program with one change: ``import pika`` became ``from litemq import pika``, so it runs against
./litemq.db (or $LITEMQ_URL) instead of a RabbitMQ server.
"""
from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello')

channel.basic_publish(exchange='',
                      routing_key='hello',
                      body='Hello World!')

print(" [x] Sent 'Hello World!'")
