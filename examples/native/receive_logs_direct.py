"""Tutorial 3.2.3 (交换机之关键字), the consumer, in litemq's native API: prints the logs of the severities named on
the command line, forever."""
import sys

import litemq

severities = sys.argv[1:]
if not severities:
    sys.exit("Usage: %s [info] [warning] [error]" % sys.argv[0])

with litemq.connect() as conn:
    conn.declare_exchange("logs2", "direct")
    queue = conn.declare_queue("", exclusive=True).queue
    for severity in severities:
        conn.bind_queue(queue, "logs2", severity)
    print(" [*] Waiting for logs. To exit press CTRL+C", flush=True)
    for delivery in conn.consume(queue, auto_ack=True):
        print(" [x] %r" % delivery.body, flush=True)
