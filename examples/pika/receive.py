"""Tutorial 3.2.1 (简单模式), the consumer: print each message of the queue 'hello' (auto-ack), forever.

The tutorial's program with one change: ``import pika`` became ``from litemq import pika``.
"""
from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello')

def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)


channel.basic_consume(queue='hello',
                      auto_ack=True,
                      on_message_callback=callback)


print(' [*] Waiting for messages. To exit press CTRL+C')
channel.start_consuming()
