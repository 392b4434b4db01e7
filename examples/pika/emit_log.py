"""Tutorial 3.2.3 (交换机之发布订阅), the producer: one log message to the fanout exchange 'logs'.

The tutorial's program with one change: ``import pika`` became ``from litemq import pika``.
"""
from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters(
        host='localhost'))
channel = connection.channel()

channel.exchange_declare(exchange='logs',
                         exchange_type='fanout')

message = "info: Hello World!"
channel.basic_publish(exchange='logs',
                      routing_key='',
                      body=message)
print(" [x] Sent %r" % message)
connection.close()
