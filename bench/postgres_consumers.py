"""Where row i's consumers spend on PostgreSQL: k consumer processes (prefetch 1, as row i) drain one queue of n
messages, and this prints, per message, the CPU of the consumers and of their server sessions, what the server did
(claims tried and claims that took a message, from the schema's table statistics), and what the sessions waited on
(pg_stat_activity sampled every millisecond while they drain).

Wall-clock rates on a shared machine move with the load; CPU and statements per message, and how often a session
waits on a lock, say what the fourth consumer costs beside the first.

    python -m bench.postgres_consumers [--url postgresql://postgres@127.0.0.1:5432/test] [--n 3000] [--k 1,4]

Needs the server on this machine (its backends' /proc entries).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import time
import uuid
from typing import Any

from .measure import bodies, tcp_ports
from .postgres_cpu import backend_seconds
from .systems_postgres import DEFAULT_URL, drop_schemas, schema_url

QUEUE = "bench"
IDLE = 0.5


def consume(url: str, sessions: Any, go: Any, results: Any) -> None:
    import psycopg

    import litemq

    conn = litemq.connect(url)
    consumer = conn.consume(QUEUE, prefetch=1)
    with psycopg.connect(url.split("?")[0], autocommit=True) as db:
        pids = [row[0] for row in db.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) "
                                             "AND pid <> pg_backend_pid()", (tcp_ports(),)).fetchall()]
    sessions.put(pids)
    go.wait()
    server, client, wall, count = sum(map(backend_seconds, pids)), time.process_time(), time.perf_counter(), 0
    last = wall
    while True:
        delivery = consumer.get(IDLE)
        if delivery is None:
            break
        delivery.ack()
        count += 1
        last = time.perf_counter()
    server, client = sum(map(backend_seconds, pids)) - server, time.process_time() - client
    results.put({"count": count, "server": server, "client": client, "wall": last - wall})
    consumer.cancel()
    conn.close()


def run(url: str, k: int, n: int) -> dict[str, Any]:
    import psycopg

    import litemq

    schema = f"consumers_{uuid.uuid4().hex[:8]}"
    store = schema_url(url, schema)
    try:
        with litemq.connect(store) as conn:
            conn.declare_queue(QUEUE, durable=True)
            for start in range(0, n, 1000):
                conn.publish_many("", QUEUE, bodies(min(1000, n - start), 100, start))
        context = multiprocessing.get_context("spawn")
        sessions, results, go = context.Queue(), context.Queue(), context.Event()
        processes = [context.Process(target=consume, args=(store, sessions, go, results)) for _ in range(k)]
        for process in processes:
            process.start()
        pids = [pid for _ in processes for pid in sessions.get(timeout=60)]
        with psycopg.connect(url, autocommit=True) as db:
            stats = ("SELECT coalesce(sum(idx_scan), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0) "
                     "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'litemq_messages'")
            db.execute("SELECT pg_stat_clear_snapshot()")
            before = db.execute(stats, (schema,)).fetchone()
            waits: collections.Counter[str] = collections.Counter()
            samples = 0
            go.set()
            while any(process.is_alive() for process in processes) and results.qsize() < k:
                for state, kind, event in db.execute(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(%s)",
                        (pids,)).fetchall():
                    waits[f"{state}: {kind}/{event}" if kind else f"{state}: on CPU"] += 1
                samples += 1
                time.sleep(0.001)
            done = [results.get(timeout=60) for _ in processes]
            for process in processes:
                process.join(30)
            time.sleep(0.6)  # the statistics are sent at the sessions' end and at most every 500 ms
            db.execute("SELECT pg_stat_clear_snapshot()")
            after = db.execute(stats, (schema,)).fetchone()
    finally:
        drop_schemas(url, [schema])
    received = sum(r["count"] for r in done)
    wall = max(r["wall"] for r in done)
    return {"k": k, "received": received, "rate": received / wall,
            "server_us": sum(r["server"] for r in done) * 1e6 / received,
            "client_us": sum(r["client"] for r in done) * 1e6 / received,
            "index_scans": (after[0] - before[0]) / received, "updated": (after[1] - before[1]) / received,
            "deleted": (after[2] - before[2]) / received, "per_process": [r["count"] for r in done],
            "waits": {name: count / samples for name, count in waits.most_common(12)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--k", default="1,4")
    args = parser.parse_args()
    for k in map(int, args.k.split(",")):
        r = run(args.url, k, args.n)
        print(f"{k} consumer(s): {r['received']} msgs, {r['rate']:.0f} msgs/s; per message: server CPU "
              f"{r['server_us']:.0f} us, client CPU {r['client_us']:.0f} us, index scans {r['index_scans']:.2f}, "
              f"rows updated {r['updated']:.2f}, deleted {r['deleted']:.2f}; per process {r['per_process']}; "
              f"load {os.getloadavg()[0]:.1f}")
        print("   sessions seen (share of samples, summed over sessions): "
              + ", ".join(f"{name} {share:.2f}" for name, share in r["waits"].items()))


if __name__ == "__main__":
    main()
