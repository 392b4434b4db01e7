"""Tutorial 3.2.3 (交换机之发布订阅), the consumer, in litemq's native API: a private queue bound to 'logs'; prints
every log, forever."""
import litemq

with litemq.connect() as conn:
    conn.declare_exchange("logs", "fanout")
    queue = conn.declare_queue("", exclusive=True).queue  # server-named, gone when this connection closes
    conn.bind_queue(queue, "logs")
    print(" [*] Waiting for logs. To exit press CTRL+C", flush=True)
    for delivery in conn.consume(queue, auto_ack=True):
        print(" [x] %r" % delivery.body, flush=True)
