"""Tutorial 4.2 (rpc的实现), the server, in litemq's native API: answers Fibonacci requests on 'rpc_queue', forever.

RpcServer sends each reply and acks its request in one transaction, so a request is answered exactly once."""
import litemq


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def on_request(request):
    n = int(request.body)
    print(" [.] fib(%s)" % n, flush=True)
    return str(fib(n))


with litemq.connect() as conn:
    server = litemq.RpcServer(conn, "rpc_queue", on_request)
    print(" [x] Awaiting RPC requests", flush=True)
    server.serve()
