"""Tutorial 3.2.3 (交换机之通配符), the consumer, in litemq's native API: prints the logs whose key matches its
binding keys (the command line's, default "#.news"), forever."""
import sys

import litemq

with litemq.connect() as conn:
    conn.declare_exchange("logs3", "topic")
    queue = conn.declare_queue("", exclusive=True).queue
    for binding_key in sys.argv[1:] or ["#.news"]:
        conn.bind_queue(queue, "logs3", binding_key)
    print(" [*] Waiting for logs. To exit press CTRL+C", flush=True)
    for delivery in conn.consume(queue, auto_ack=True):
        print(" [x] %r" % delivery.body, flush=True)
