"""Publish one message to the queue 'hello' in litemq.db (or $LITEMQ_URL).  Run receive.py in another terminal."""

import sys

import litemq

with litemq.connect() as conn:
    conn.declare_queue("hello", durable=True)
    body = " ".join(sys.argv[1:]) or "Hello World!"
    conn.publish("", "hello", body, litemq.Properties(delivery_mode=2, content_type="text/plain"))
    print(f" [x] Sent {body!r}")
