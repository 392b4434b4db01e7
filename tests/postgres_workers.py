"""Processes the PostgreSQL store tests start: a connection that registers and waits to be killed, and a waiting
consumer whose CPU time is measured. Run as ``python postgres_workers.py KIND URL ...``; each prints one JSON line."""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time

from litemq.store.postgres import PostgresStore


def registered(url: str, connection_id: str) -> tuple[PostgresStore, object]:
    store = PostgresStore(url)
    liveness = store.liveness(connection_id, store.registration)
    with store.write_exclusive() as s:
        s.register_connection(connection_id, os.getpid(), socket.gethostname(), time.time())
        s.wake(None)
    return store, liveness


def hold(url: str, connection_id: str) -> None:
    """Register and sleep until killed."""
    kept = registered(url, connection_id)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    time.sleep(60)
    print(kept)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(url: str, connection_id: str, seconds: str) -> None:
    """Wait as a consumer of queue "q" does for ``seconds``, sleeping on its doorbell and the hang-up watches, and
    looking at the queue when the data version moves (as the broker's waiter); report the CPU time it and its two
    server sessions (its own and the listening one) used."""
    store, liveness = registered(url, connection_id)
    bell = store.doorbell(connection_id, 1, "tag", "q", "waiter")
    backends = [store._conn.info.backend_pid, store._relay._conn.info.backend_pid]
    # One look before measuring: its statements are prepared on this session at their first use, a cost of the
    # first look (about 10 ms of CPU here and on the server), not of waiting.
    ids = store.connection_ids()
    liveness.watch(ids)
    liveness.dead(ids)
    store.data_version()
    store.ready_count("q")
    store.next_lease_expiry("q")
    store.deadlines()
    before = time.process_time(), [_cpu_seconds(pid) for pid in backends]
    deadline = time.monotonic() + float(seconds)
    seen, looks, wakes = -1, 0, 0
    while time.monotonic() < deadline:
        ids = store.connection_ids()
        sockets, delay = liveness.watch(ids)
        readable, _, _ = select.select([bell.socket, *sockets], [], [], min(delay, deadline - time.monotonic()))
        wakes += 1
        if bell.socket in readable:
            bell.socket.recv(64)
        liveness.dead(ids)
        version = store.data_version()
        if version != seen:
            seen = version
            looks += 1
            store.ready_count("q")
            store.next_lease_expiry("q")
            store.deadlines()
    after = time.process_time(), [_cpu_seconds(pid) for pid in backends]
    print(json.dumps({"seconds": float(seconds), "process": after[0] - before[0],
                      "backends": sum(after[1]) - sum(before[1]), "looks": looks, "wakes": wakes}), flush=True)


if __name__ == "__main__":
    {"hold": hold, "wait": wait}[sys.argv[1]](*sys.argv[2:])
