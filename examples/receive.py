"""Print what arrives on the queue 'hello' in litemq.db (or $LITEMQ_URL), acking each message.  Ctrl-C stops.

With an argument N, stop after N messages."""

import sys

import litemq

limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
with litemq.connect() as conn:
    conn.declare_queue("hello", durable=True)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    received = 0
    try:
        for delivery in conn.consume("hello", prefetch=1):
            print(f" [x] Received {delivery.body.decode()!r}", flush=True)
            delivery.ack()
            received += 1
            if received == limit:
                break
    except KeyboardInterrupt:
        pass
