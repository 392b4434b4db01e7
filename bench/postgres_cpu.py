"""CPU per operation on PostgreSQL, the server's and the client's: the psycopg floor (bench/floor_postgres.py)
beside litemq's native API, for rows a (publish, one per transaction) and c (get + ack, one at a time).

Wall-clock rates on a shared machine move with the load and the disk's flushes; the CPU each side spends per
operation does not, and on a quiet machine it is what decides the ratio. The server's is read from
/proc/<backend pid>/schedstat (the time the session's backend ran), the client's from ``time.process_time``
(the whole process: litemq's background thread included).

    python -m bench.postgres_cpu [--url postgresql://postgres@127.0.0.1:5432/test] [--n 2000] [--reps 3]

Needs the server on this machine (its backends' /proc entries).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any, Callable

from . import floor_postgres
from .systems_postgres import DEFAULT_URL, drop_schemas, schema_url

BODY = b"x" * 100


def backend_seconds(pid: int) -> float:
    """The CPU time the process has run, to the nanosecond (the scheduler's own count, not /proc/<pid>/stat's
    clock ticks of 10 ms)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


def measured(pid: int, n: int, work: Callable[[], None]) -> tuple[float, float, float]:
    """(server, client, wall) microseconds per operation of ``n`` calls of ``work``."""
    server, client, wall = backend_seconds(pid), time.process_time(), time.perf_counter()
    for _ in range(n):
        work()
    server, client, wall = backend_seconds(pid) - server, time.process_time() - client, time.perf_counter() - wall
    return server * 1e6 / n, client * 1e6 / n, wall * 1e6 / n


class Floor:
    def __init__(self, url: str, schema: str) -> None:
        floor_postgres.create(url, schema)
        self.floor = floor_postgres.PgFloor(url, schema)
        self.pid = self.floor.db.info.backend_pid

    def publish(self) -> None:
        self.floor.publish("q", BODY)

    def get_ack(self) -> None:
        (message_id, _), = self.floor.claim("q")
        self.floor.ack(message_id)

    def close(self) -> None:
        self.floor.close()


class Litemq:
    def __init__(self, url: str, schema: str) -> None:
        import litemq

        self.conn = litemq.connect(schema_url(url, schema))
        self.conn.declare_queue("q", durable=True)
        self.pid = self.conn._store._conn.info.backend_pid  # type: ignore[attr-defined]

    def publish(self) -> None:
        self.conn.publish("", "q", BODY)

    def get_ack(self) -> None:
        delivery = self.conn.get("q")
        assert delivery is not None
        delivery.ack()

    def close(self) -> None:
        self.conn.close()


def run(system: Any, n: int) -> dict[str, tuple[float, float, float]]:
    for _ in range(50):  # statements prepared, caches warm
        system.publish()
    for _ in range(50):
        system.get_ack()
    return {"publish": measured(system.pid, n, system.publish),  # leaves n ready messages for get + ack
            "get + ack": measured(system.pid, n, system.get_ack)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for rep in range(args.reps):
        for name, kind in (("floor", Floor), ("litemq", Litemq)):  # interleaved: A, B, A, B
            schema = f"cpu_{uuid.uuid4().hex[:8]}"
            system = kind(args.url, schema)
            try:
                for op, measure in run(system, args.n).items():
                    results.setdefault((op, name), []).append(measure)
            finally:
                system.close()
                drop_schemas(args.url, [schema])
    print(f"{args.n} operations x {args.reps} reps; load average {os.getloadavg()[0]:.1f} at the end; "
          "microseconds per operation, median [min-max]")
    print(f"{'operation':10} {'system':7} {'server CPU':>18} {'client CPU':>18} {'wall':>20}")
    for (op, name), figures in results.items():
        cells = []
        for column in range(3):
            values = [f[column] for f in figures]
            cells.append(f"{statistics.median(values):6.0f} [{min(values):.0f}-{max(values):.0f}]")
        print(f"{op:10} {name:7} {cells[0]:>18} {cells[1]:>18} {cells[2]:>20}")


if __name__ == "__main__":
    main()
