"""Tutorial 3.2.3 (交换机之关键字), the producer: one log message to the direct exchange 'logs2'.

The tutorial's program with ``from litemq import pika`` for ``import pika``, and one addition: the severity
(routing key) and the message may be given on the command line, ``emit_log_direct.py error "error: disk full"``;
without arguments it sends the tutorial's "info: Hello Yuan!" with the key 'info'.
"""
import sys

from litemq import pika

connection = pika.BlockingConnection(pika.ConnectionParameters(
        host='localhost'))
channel = connection.channel()

channel.exchange_declare(exchange='logs2',
                         exchange_type='direct')

severity = sys.argv[1] if len(sys.argv) > 1 else 'info'
message = ' '.join(sys.argv[2:]) or "info: Hello Yuan!"
channel.basic_publish(exchange='logs2',
                      routing_key=severity,
                      body=message)
print(" [x] Sent %r" % message)
connection.close()
