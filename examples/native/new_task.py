"""Tutorial 3.2.2 (参数), the producer, in litemq's native API: a persistent message to the durable queue 'hello2'.

The message is the command line's words, default 'Hello World!'."""
import sys

import litemq

with litemq.connect() as conn:
    conn.declare_queue("hello2", durable=True)
    message = " ".join(sys.argv[1:]) or "Hello World!"
    conn.publish("", "hello2", message, litemq.Properties(delivery_mode=2))  # persistent
    print(" [x] Sent %r" % message)
