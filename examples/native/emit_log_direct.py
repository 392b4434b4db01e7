"""Tutorial 3.2.3 (交换机之关键字), the producer, in litemq's native API: one log to the direct exchange 'logs2'.

Usage: emit_log_direct.py [severity [message...]]; default 'info' and "info: Hello Yuan!"."""
import sys

import litemq

severity = sys.argv[1] if len(sys.argv) > 1 else "info"
message = " ".join(sys.argv[2:]) or "info: Hello Yuan!"
with litemq.connect() as conn:
    conn.declare_exchange("logs2", "direct")
    conn.publish("logs2", severity, message)
    print(" [x] Sent %r" % message)
