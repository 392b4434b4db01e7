"""Tutorial 4.2 (rpc的实现), the client, in litemq's native API: asks 'rpc_queue' for fib(n) and prints it.

n is the first argument, default 30 (the tutorial's 50 would take the naive server hours)."""
import sys

import litemq

n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
with litemq.connect() as conn:
    response = int(litemq.RpcClient(conn).call("rpc_queue", str(n), timeout=60))
    print(" [.] Got %r" % response)
