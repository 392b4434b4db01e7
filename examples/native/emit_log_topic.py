"""Tutorial 3.2.3 (交换机之通配符), the producer, in litemq's native API: one log to the topic exchange 'logs3'.

Usage: emit_log_topic.py [routing_key [message...]]; default 'europe.weather' and "info: Hello ERU!"."""
import sys

import litemq

routing_key = sys.argv[1] if len(sys.argv) > 1 else "europe.weather"
message = " ".join(sys.argv[2:]) or "info: Hello ERU!"
with litemq.connect() as conn:
    conn.declare_exchange("logs3", "topic")
    conn.publish("logs3", routing_key, message)
    print(" [x] Sent %r" % message)
