"""Tutorial 3.2.3 (交换机之通配符), the producer: one log message to the topic exchange 'logs3'.

The tutorial's program with ``from litemq import pika`` for ``import pika``, and one addition: the routing key and
the message may be given on the command line, ``emit_log_topic.py usa.news "big news"``; without arguments it sends
the tutorial's "info: Hello ERU!" with the key 'europe.weather'.
"""
import sys

from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters(
        host='localhost'))
channel = connection.channel()

channel.exchange_declare(exchange='logs3',
                         exchange_type='topic')

routing_key = sys.argv[1] if len(sys.argv) > 1 else 'europe.weather'
message = ' '.join(sys.argv[2:]) or "info: Hello ERU!"
channel.basic_publish(exchange='logs3',
                      routing_key=routing_key,
                      body=message)
print(" [x] Sent %r" % message)
connection.close()
