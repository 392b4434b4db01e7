"""Tutorial 3.2.1 (简单模式), the consumer, in litemq's native API: print each message of 'hello', forever."""
import litemq

with litemq.connect() as conn:
    conn.declare_queue("hello")
    consumer = conn.consume("hello", auto_ack=True)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    for delivery in consumer:
        print(" [x] Received %r" % delivery.body, flush=True)
