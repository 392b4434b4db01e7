"""Tutorial 3.2.2 (参数), the worker, in litemq's native API: manual acks and fair dispatch (prefetch=1) on 'hello2'.

Each message takes the first argument's seconds (default 1). A message is acked only when done: if this worker
dies first, the message goes back to the queue for another worker."""
import sys
import time

import litemq

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1

with litemq.connect() as conn:
    conn.declare_queue("hello2", durable=True)
    consumer = conn.consume("hello2", prefetch=1)  # at most one unacked message at a time: fair dispatch
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    for delivery in consumer:
        print(" [x] Received %r" % delivery.body, flush=True)
        time.sleep(seconds)
        print(" [x] Done", flush=True)
        delivery.ack()
