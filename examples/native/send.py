"""Tutorial 3.2.1 (简单模式), the producer, in litemq's native API: one message to the queue 'hello'."""
import litemq

with litemq.connect() as conn:  # ./litemq.db, or $LITEMQ_URL
    conn.declare_queue("hello")
    conn.publish("", "hello", "Hello World!")
    print(" [x] Sent 'Hello World!'")
