"""How litemq's PostgreSQL ready counts cost publishers: delta rows, one per queue and session, that each session
adds to in place (what migrations 0007 and 0011 build), beside the obvious alternative, a counter UPDATE of the
queue's row per publish, on this machine's server.

    python bench/postgres_counts.py [--url postgresql://postgres@127.0.0.1:5432/test] [--publishers 8]
                                    [--seconds 10] [--body 100] [--wake] [--rounds 1]

Each design gets a fresh schema. N publisher processes (spawned) each open a PostgresStore and publish one message
at a time into one queue as the broker does (``write()``: BEGIN with the shared schema lock, ``counts_with_first``,
``insert_message``, COMMIT), calling ``maintain()`` every 0.5 s as the background thread does, for --seconds. It
prints messages per second, the p50/p99 latency of a publish, and what the queue row and the delta table left
behind (row versions, dead rows, delta rows inserted and updated in place) as pg_stat_user_tables counts them. With ``--wake`` every publish also wakes the
queue, and the rows compare the store's notification after the commit with a NOTIFY inside the transaction.
``--notify-floor`` measures that choice without litemq: N processes of raw psycopg committing one-row INSERTs with
no NOTIFY, with one inside the transaction, and with one after it in an asynchronous-commit transaction.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The alternative: the same statement triggers, but adding into the queue's row at once.
COUNTER_UPDATE = """
DROP TRIGGER litemq_messages_insert_count ON litemq_messages;
DROP TRIGGER litemq_messages_update_count ON litemq_messages;
DROP TRIGGER litemq_messages_delete_count ON litemq_messages;
CREATE FUNCTION bench_count_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE litemq_queues q SET ready_count = q.ready_count + n.c, ready_bytes = q.ready_bytes + n.b
      FROM (SELECT queue, count(*) AS c, sum(length(body)) AS b FROM new_rows
             WHERE lease_token IS NULL AND visible_at IS NULL GROUP BY queue) n WHERE q.name = n.queue;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_count_in AFTER INSERT ON litemq_messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_count_in();
"""


def publisher(url: str, ready: "multiprocessing.Barrier", seconds: float, body: bytes, wake: str,
              results: "multiprocessing.Queue") -> None:
    from litemq.store.postgres import PostgresStore

    if wake == "in the transaction":  # the alternative: NOTIFY before the commit
        PostgresStore.wake = lambda store, queues: store.run(  # type: ignore[method-assign]
            "SELECT pg_notify($1, queue) FROM unnest($2::text[]) AS queue", (store._channel, list(queues)))

    store = PostgresStore(url)
    latencies = []
    ready.wait(120)  # every publisher has opened its store
    end = time.monotonic() + seconds
    next_maintain = time.monotonic() + 0.5
    while time.monotonic() < end:
        began = time.perf_counter()
        with store.write() as s:
            s.counts_with_first("q", len(body))
            s.insert_message("q", "", "q", body, None, time.time())
            if wake != "no":
                s.wake(["q"])
        latencies.append(time.perf_counter() - began)
        if time.monotonic() >= next_maintain:
            store.maintain()
            next_maintain = time.monotonic() + 0.5
    store.close()
    results.put(latencies)


def run(url: str, design: str, wake: str, publishers: int, seconds: float, body: bytes) -> dict:
    import psycopg

    from litemq.store.postgres import PostgresStore

    schema = f"bench_counts_{uuid.uuid4().hex[:8]}"
    schema_url = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    setup = PostgresStore(schema_url)
    with setup.write_exclusive() as s:
        s.insert_queue("q", True, False, False, None, None, time.time())
    if design == "counter UPDATE":
        setup._control(COUNTER_UPDATE)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Barrier(publishers)
    processes = [context.Process(target=publisher, args=(schema_url, ready, seconds, body, wake, results))
                 for _ in range(publishers)]
    for process in processes:
        process.start()
    latencies = [latency for _ in processes for latency in results.get(timeout=seconds + 120)]
    for process in processes:
        process.join(30)
    setup.maintain()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(1.5)  # the statistics collector's delay
        stats = {row[0]: row[1:] for row in admin.execute(
            "SELECT relname, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_tup_ins FROM pg_stat_user_tables "
            "WHERE schemaname = %s", (schema,))}
    count = setup.ready_count("q")
    setup.close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    latencies.sort()
    assert count == len(latencies), (count, len(latencies))
    return {"design": design, "wake": wake, "rate": len(latencies) / seconds, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "queue_updates": stats["litemq_queues"][0],
            "queue_dead": stats["litemq_queues"][2], "deltas_inserted": stats["litemq_queue_deltas"][3],
            "deltas_hot": stats["litemq_queue_deltas"][1],
            "count": count}


NOTIFY_VARIANTS = {
    "no NOTIFY": ["BEGIN; INSERT INTO bench_notify VALUES (1); COMMIT"],
    "NOTIFY in the transaction": ["BEGIN; INSERT INTO bench_notify VALUES (1); SELECT pg_notify('bench', 'q'); "
                                  "COMMIT"],
    "NOTIFY after the commit": ["BEGIN; INSERT INTO bench_notify VALUES (1); COMMIT",
                                "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('bench', 'q'); COMMIT"],
}


def raw_committer(url: str, statements: list[str], ready: "multiprocessing.Barrier", seconds: float,
                  results: "multiprocessing.Queue") -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        done = 0
        ready.wait(120)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for statement in statements:
                connection.execute(statement, prepare=False)
            done += 1
    results.put(done)


def notify_floor(url: str, processes: int, seconds: float, rounds: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS bench_notify")
        admin.execute("CREATE TABLE bench_notify (x int)")
    context = multiprocessing.get_context("spawn")
    try:
        for _ in range(rounds):
            for name, statements in NOTIFY_VARIANTS.items():
                ready, results = context.Barrier(processes), context.Queue()
                started = [context.Process(target=raw_committer, args=(url, statements, ready, seconds, results))
                           for _ in range(processes)]
                for process in started:
                    process.start()
                total = sum(results.get(timeout=seconds + 120) for _ in started)
                for process in started:
                    process.join(30)
                print(f"{name:<28} {total / seconds:>8.0f} commits/s", flush=True)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP TABLE bench_notify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--wake", action="store_true", help="notify the queue in every publish")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the designs this many times")
    parser.add_argument("--notify-floor", action="store_true", help="raw psycopg: where a NOTIFY costs commits")
    args = parser.parse_args()
    if args.notify_floor:
        print(f"{args.publishers} processes of raw psycopg, one-row INSERT per commit, {args.seconds:.0f} s each")
        notify_floor(args.url, args.publishers, args.seconds, args.rounds)
        return
    body = b"x" * args.body
    print(f"{args.publishers} publisher processes, {args.seconds:.0f} s each run, {args.body}-byte bodies")
    print(f"{'design':<16} {'wake':<20} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'queue row UPDATEs':>18} "
          f"{'queue dead rows':>16} {'delta rows':>11} {'delta HOT updates':>18}")
    rows: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        variants = ([("delta rows", "after the commit"), ("delta rows", "in the transaction")] if args.wake
                    else [("delta rows", "no"), ("counter UPDATE", "no")])
        for design, wake in variants:
            result = run(args.url, design, wake, args.publishers, args.seconds, body)
            rows.setdefault(f"{design}, wake {wake}", []).append(result)
            print(f"{design:<16} {wake:<20} {result['rate']:>8.0f} {1000 * result['p50']:>7.2f} {1000 * result['p99']:>7.2f} "
                  f"{result['queue_updates']:>18} {result['queue_dead']:>16} {result['deltas_inserted']:>11} "
                  f"{result['deltas_hot']:>18}",
                  flush=True)
    if args.rounds > 1:
        for design, results in rows.items():
            print(f"median {design}: {statistics.median(r['rate'] for r in results):.0f} msgs/s")


if __name__ == "__main__":
    main()
