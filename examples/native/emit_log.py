"""Tutorial 3.2.3 (交换机之发布订阅), the producer, in litemq's native API: one log to the fanout exchange 'logs'."""
import litemq

with litemq.connect() as conn:
    conn.declare_exchange("logs", "fanout")
    message = "info: Hello World!"
    conn.publish("logs", "", message)
    print(" [x] Sent %r" % message)
