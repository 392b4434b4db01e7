"""Tutorial 3.2.2 (参数), the producer: a persistent message to the durable queue 'hello2'.

The tutorial gives this part as a fragment (持久化参数: the durable queue and delivery_mode=2); this is that fragment
with the simple producer's connection lines around it, and ``from litemq import pika`` for ``import pika``.
One addition, as in RabbitMQ's own tutorial two: the message is the command line's words when there are any
(default: the tutorial's 'Hello World!'), so several distinct tasks can be sent.
"""
import sys

from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

#声明queue
channel.queue_declare(queue='hello2', durable=True)  # 若声明过，则换一个名字

message = ' '.join(sys.argv[1:]) or 'Hello World!'
channel.basic_publish(exchange='',
                      routing_key='hello2',
                      body=message,
                      properties=pika.BasicProperties(
                          delivery_mode=2,  # make message persistent
                          )
                      )
print(" [x] Sent %r" % message)
