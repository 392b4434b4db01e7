"""Row i's consumer processes and the file's write lock: where their time goes.

    python bench/write_lock.py [--consumers 1,4] [--n 8000] [--runs 2] [--prefetch 1]

Fills a fresh file with ``--n`` messages, then drains it with each number of consumer processes (spawned, each
``conn.consume(prefetch=...)``, get and ack until none comes for 0.3 s), interleaved run by run, and prints per
run: the rate; the CPU of all the consumers per message (user + system, what other load on the machine moves
least); the CPU spent inside write transactions (BEGIN IMMEDIATE to the end of COMMIT) per transaction; the
longest wait for a transaction to begin; read system calls per message (``syscr`` of /proc/self/io: the pages
SQLite reads again after another process wrote); and each process's share.

What it showed (2 cores, load 2.5-3.5 from other work; issue 18, row i):
- a consumer spends 76-83 us of its 92-102 us of CPU per message inside its one write transaction (the ack and the
  next claim), where no other process can be: even a free handover bounds 4 consumers at 1.21-1.23x one;
- every handover costs the next writer its page cache: SQLite drops a connection's cache whenever another connection
  committed, and reads again each page it needs (read calls per message: 0.13 alone, 0.6-1.2 when SQLite's busy
  handler lets one process keep the lock for long runs, 1.7-2.4 when the lock passes at every transaction), so CPU
  inside the transaction rises from 76-83 us to 87-101 us, and to 94-119 us when the lock passes every time;
- SQLite's busy handler lets one process keep the lock for long runs (fast, unfair: a consumer waited 0.24-0.86 s
  for it, shares of 986 to 2,931 of 8,000); a fair queue on a side flock (each waiter woken by the kernel) evened
  the shares and the waits (18-52 ms at most) but cost 119-157 us of CPU per message against 106-122 us, and no
  better rates; with the blocking wait in a thread (to keep the busy timeout) 164-246 us. A handover is worth the
  page cache it costs only when the work outside the transaction exceeds the pages read again.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QUEUE = "write-lock"


def _read_calls() -> int:
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("syscr:"))
    except OSError:  # not Linux: not counted
        return 0


def consumer(path: str, prefetch: int, go, results) -> None:
    import litemq
    from litemq.store import sqlite_connection

    transaction = sqlite_connection._Transaction
    enter, leave = transaction.__enter__, transaction.__exit__
    figures = {"wait": 0.0, "longest": 0.0, "inside": 0.0, "writes": 0}
    began = [0.0]

    def timed_enter(self):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        store = enter(self)
        if self.writes:
            waited = time.perf_counter() - start
            figures["wait"] += waited
            figures["longest"] = max(figures["longest"], waited)
            figures["writes"] += 1
            began[0] = time.thread_time()
        return store

    def timed_exit(self, *exc):  # type: ignore[no-untyped-def]
        try:
            return leave(self, *exc)
        finally:
            if self.writes:
                figures["inside"] += time.thread_time() - began[0]

    transaction.__enter__, transaction.__exit__ = timed_enter, timed_exit  # type: ignore[method-assign]
    with litemq.connect(path) as conn:
        receiver = conn.consume(QUEUE, prefetch=prefetch)
        go.wait()
        reads, usage, start = _read_calls(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        count, last = 0, start
        while True:
            delivery = receiver.get(0.3)
            if delivery is None:
                break
            delivery.ack()
            count += 1
            last = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
        results.put({"n": count, "start": start, "last": last, "cpu": cpu, "reads": _read_calls() - reads,
                     **figures})


def run(path: str, consumers: int, prefetch: int) -> str:
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    processes = [context.Process(target=consumer, args=(path, prefetch, go, results)) for _ in range(consumers)]
    for process in processes:
        process.start()
    time.sleep(1.5)  # all connected and waiting on go
    go.set()
    found = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(30)
    n = sum(f["n"] for f in found)
    span = max(f["last"] for f in found) - min(f["start"] for f in found)
    writes = sum(f["writes"] for f in found) or 1
    return (f"{consumers} consumer(s): {n / span:7,.0f} msg/s, CPU {sum(f['cpu'] for f in found) / n * 1e6:4.0f} us/msg"
            f" ({sum(f['inside'] for f in found) / writes * 1e6:4.0f} us inside each write transaction), "
            f"longest wait to begin {max(f['longest'] for f in found) * 1000:5.0f} ms, "
            f"read calls {sum(f['reads'] for f in found) / n:5.2f}/msg, shares {sorted(f['n'] for f in found)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", default="1,4", help="consumer process counts, interleaved (1,4)")
    parser.add_argument("--n", type=int, default=8000, help="messages per run (8,000)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each count (2)")
    parser.add_argument("--prefetch", type=int, default=1, help="each consumer's prefetch (1, as row i)")
    args = parser.parse_args()
    import litemq

    print(f"load {os.getloadavg()[0]:.2f} at start; {os.cpu_count()} CPUs; {args.n} messages per run")
    for _ in range(args.runs):
        for consumers in (int(c) for c in args.consumers.split(",")):
            directory = tempfile.mkdtemp(prefix="litemq-write-lock-")
            try:
                path = os.path.join(directory, "bench.db")
                with litemq.connect(path) as conn:
                    conn.declare_queue(QUEUE, durable=True)
                    for start in range(0, args.n, 1000):
                        conn.publish_many("", QUEUE, [b"x" * 100] * min(1000, args.n - start))
                print(run(path, consumers, args.prefetch), flush=True)
            finally:
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
