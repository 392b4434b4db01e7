"""Tutorial 3.2.3 (交换机之通配符), the consumer: prints the logs whose key matches its binding keys, forever.

The tutorial's program with ``from litemq import pika`` for ``import pika``, and one addition: the binding keys may
be given on the command line, ``receive_logs_topic.py "europe.*" "#.weather"``; without arguments it binds the
tutorial's "#.news".
"""
from litemq import pika
import sys

connection = pika.BlockingConnection(pika.ConnectionParameters(
        host='localhost'))
channel = connection.channel()

channel.exchange_declare(exchange='logs3',
                         exchange_type='topic')

result = channel.queue_declare("",exclusive=True)
queue_name = result.method.queue



for binding_key in sys.argv[1:] or ["#.news"]:
    channel.queue_bind(exchange='logs3',
                       queue=queue_name,
                       routing_key=binding_key)

print(' [*] Waiting for logs. To exit press CTRL+C')

def callback(ch, method, properties, body):
    print(" [x] %r" % body)


channel.basic_consume(queue=queue_name,
                      auto_ack=True,
                      on_message_callback=callback)

channel.start_consuming()
