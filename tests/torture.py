"""Torture: producers and consumers on one litemq broker, SIGKILLed at random throughout, and nothing lost.

    python tests/torture.py --minutes 10            # the soak: PASS/FAIL summary, exit status 0/1
    python tests/torture.py --seconds 60 --producers 2 --consumers 4 --kill-every 0.2:0.8
    python tests/torture.py --minutes 10 --cleanup-every 5:20   # and a cleanup script removing the lock directory
    python tests/torture.py --minutes 10 --url 'postgresql://postgres@127.0.0.1/test?schema=torture'

The broker is a file in the run's directory, or the PostgreSQL schema ``--url`` names (empty or new; the harness
leaves it as the run ends, empty when it passed). What is the file's alone (its lock directory and the cleanup
script, the WAL's size, PRAGMA integrity_check) is left out on PostgreSQL.

N producer and M consumer processes (fresh Python processes, nothing inherited) share one broker: one durable
queue, manual acks, each consumer with a prefetch drawn from 1..20 and a short lease (5 s) that the background
renewal keeps alive, so a lease that is unexpectedly stuck shows as a multi-second stall or as an error. The
harness SIGKILLs a random worker every --kill-every seconds (half the time a consumer that holds leases right
then) and starts a replacement of the same kind; with --cleanup-every it also removes the file's lock directory now
and then, as a careless cleanup script would. At the end it stops killing, stops the producers, lets the
consumers drain the queue, stops them (a stop file), drains whatever is left itself with a fresh connection
(there should be nothing) and checks, from the workers' logs and the broker:

- every message whose publish() returned (it is in its producer's log) was delivered and is gone: acked (an
  ``acked`` line), or delivered by a consumer killed between its ack's commit and the log line; none left over;
- no message was delivered twice with redelivered=False, and none was acked twice;
- every delivered id was published (a killed producer's one in-flight publish may be delivered unlogged);
- every large body (one message in LARGE_EVERY) comes back whole;
- no leases, no messages and no large bodies remain, ready_count matches the rows (also checked throughout the run), no
  connection or consumer rows and no liveness lock files remain, PRAGMA integrity_check is ok;
- no exception reached any worker (each writes its traceback to errors/<name>.txt; a SIGKILLed worker writes
  nothing) and nothing was written to any worker's stderr (litemq logs background failures there);
- every worker exited 0 or was SIGKILLed by the harness, and no process of the run is still alive;
- a killed consumer's leases went back within lease_seconds + STUCK_GRACE_SECONDS;
- no live worker's connection was taken for dead (checked throughout: its row must stay while it runs).

Logs (one file per worker, opened in append mode, one ``os.write`` per line): producers write ``<id>`` after
publish() returned; consumers write ``delivered <id> <redelivered 0/1>`` before acking and ``acked <id>`` after
ack() returned. Importable: ``run(Config(...)) -> Result`` (tests/test_torture.py runs a short one).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout: torture this checkout's litemq

from engines import engine_of, ready_counters, split_postgresql_url  # noqa: E402 (tests/, beside this file)

QUEUE = "torture"
STUCK_GRACE_SECONDS = 10.0
"""How long after lease expiry a killed consumer's leases may still be held before that counts as stuck."""
LOOP_SECONDS = 0.005
"""The harness's polling period while it kills and watches (also the resolution of its latency figures)."""
INVARIANT_SECONDS = 0.5
BURST_PROBABILITY = 0.005
BURST_SIZE = (50, 500)
LARGE_EVERY = 8
"""Every eighth message carries a body over 3 KB (its id, a space, LARGE_PADDING), kept in litemq_bodies."""
LARGE_PADDING = bytes(range(256)) * 20
"""A producer now and then publishes a burst at full speed (keeping its average rate by pausing after it)."""


@dataclass
class Config:
    producers: int = 3
    consumers: int = 3
    seconds: float = 30.0
    """How long the killing goes on; draining and checking come after."""
    kill_every: tuple[float, float] = (0.5, 1.0)
    rate: float = 150.0
    """Messages per second each producer publishes (paced; it catches up in bursts after stalls)."""
    prefetch: tuple[int, int] = (1, 20)
    lease_seconds: float = 5.0
    work_probability: float = 0.05
    """Chance that a consumer 'works' on a delivery for up to 20 ms before acking (widens the unacked window)."""
    slow_probability: float = 0.0005
    """Chance that a consumer holds a delivery for 1.3 lease periods (background renewal must keep it)."""
    drain_seconds: float = 30.0
    """How long the consumers get to empty the queue once the producers stopped."""
    stop_seconds: float = 20.0
    """How long workers get to exit after their stop file appears."""
    cleanup_every: Optional[tuple[float, float]] = None
    """Seconds between runs of a "cleanup script" that removes the file's ``-litemq/`` lock directory, drawn
    uniformly (None: no cleanup). Live connections must survive it: none may be taken for dead."""
    seed: Optional[int] = None
    workdir: Optional[str] = None
    progress: bool = False
    url: Optional[str] = None
    """The broker: a path or a postgresql:// URL (None: torture.db in the run's directory)."""


@dataclass
class Result:
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    workdir: str = ""
    seconds: float = 0.0
    drain_seconds: float = 0.0
    total_seconds: float = 0.0
    workers_started: int = 0
    kills: collections.Counter = field(default_factory=collections.Counter)
    cleanups: int = 0
    """Times the cleanup script removed the lock directory."""
    kills_holding_leases: int = 0
    published: int = 0
    unlogged_publishes: int = 0
    delivered_lines: int = 0
    acked: int = 0
    acked_unlogged: int = 0
    redeliveries: int = 0
    redelivered_messages: int = 0
    left_over: int = 0
    max_backlog: int = 0
    max_wal_bytes: int = 0
    release_ms: list[float] = field(default_factory=list)
    """Per killed consumer that held leases: kill to none of them held any more."""
    reap_ms: list[float] = field(default_factory=list)
    """Per killed worker with a registered connection: kill to its row gone."""
    invariant_checks: int = 0
    seed: int = 0

    @property
    def throughput(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        def dist(values: list[float]) -> str:
            if not values:
                return "none"
            v = sorted(values)
            return (f"p50 {v[len(v) // 2]:.0f} ms, p90 {v[min(len(v) - 1, int(len(v) * 0.9))]:.0f} ms, "
                    f"max {v[-1]:.0f} ms (n={len(v)})")

        lines = [
            f"litemq torture: {'PASS' if self.passed else 'FAIL'}  (seed {self.seed}, files in {self.workdir})",
            f"  duration   {self.seconds:.1f} s of kills, then {self.drain_seconds:.1f} s to drain and stop; "
            f"{self.total_seconds:.1f} s in all; {self.workers_started} worker processes started",
            f"  published  {self.published:,} logged ({self.published / max(self.seconds, 1e-9):,.0f}/s)"
            f" + {self.unlogged_publishes} in flight when their producer was killed",
            f"  acked      {self.acked:,} ({self.throughput:,.0f}/s over the kill phase); "
            f"{self.acked_unlogged} acked by a consumer killed before it logged the ack",
            f"  redelivered {self.redeliveries:,} deliveries ({self.redelivered_messages:,} messages); "
            f"left for the final drain: {self.left_over}; largest backlog seen: {self.max_backlog:,}; "
            f"largest WAL seen: {self.max_wal_bytes / 1e6:.1f} MB",
            f"  kills      {sum(self.kills.values())} ({self.kills['producer']} producers, "
            f"{self.kills['consumer']} consumers, {self.kills_holding_leases} of them holding leases); "
            f"lock directory removed {self.cleanups} times",
            f"  killed consumer's leases back after: {dist(self.release_ms)}",
            f"  killed worker's connection reaped after: {dist(self.reap_ms)}",
            f"  invariant checks during the run: {self.invariant_checks}",
        ]
        if self.failures:
            lines.append(f"  FAILURES ({len(self.failures)}):")
            for failure in self.failures[:50]:
                lines.extend("    " + line for line in failure.splitlines()[:40])
            if len(self.failures) > 50:
                lines.append(f"    ... and {len(self.failures) - 50} more")
        return "\n".join(lines)


# =============================================================================================================
# Workers (run in their own processes: python tests/torture.py _worker '<json>')
# =============================================================================================================

class _Stop(Exception):
    pass


class _Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.dir = Path(spec["dir"])
        self.name = spec["name"]
        self.parent = spec["parent"]
        self.deadline = spec["deadline"]
        self.stop_file = self.dir / spec["stop_file"]
        self.log = os.open(self.dir / "logs" / f"{self.name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.rng = random.Random(spec["seed"])

    def write(self, line: str) -> None:
        os.write(self.log, (line + "\n").encode())

    def check(self) -> None:
        """Stop quietly when the harness is gone; fail loudly past the run's deadline."""
        if os.getppid() != self.parent:
            raise _Stop()
        if time.time() > self.deadline:
            raise RuntimeError(f"{self.name} still running at its deadline: the harness never stopped it")

    def produce(self) -> None:
        import litemq

        conn = litemq.connect(self.spec["db"], lease_seconds=self.spec["lease_seconds"])
        conn.declare_queue(QUEUE, durable=True)
        uid = self.spec["uid"]
        interval = 1.0 / self.spec["rate"]
        next_at = time.monotonic()
        n = burst = 0
        while not self.stop_file.exists():
            self.check()
            message_id = f"{uid}:{n}"
            body = message_id.encode() + (b" " + LARGE_PADDING if n % LARGE_EVERY == 0 else b"")
            reached = conn.publish("", QUEUE, body, litemq.Properties(delivery_mode=2))
            if reached != 1:
                raise AssertionError(f"publish of {message_id} reached {reached} queues, not 1")
            self.write(message_id)
            n += 1
            # Paced at the rate on average, but now and then a burst at full speed (then a longer pause), so
            # the backlog comes and goes and consumers are killed holding full prefetch windows too.
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            if burst:
                burst -= 1
                continue
            if self.rng.random() < BURST_PROBABILITY:
                burst = self.rng.randint(*BURST_SIZE)
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        conn.close()

    def consume(self) -> None:
        import litemq

        lease = self.spec["lease_seconds"]
        conn = litemq.connect(self.spec["db"], lease_seconds=lease)
        conn.declare_queue(QUEUE, durable=True)
        consumer = conn.consume(QUEUE, prefetch=self.spec["prefetch"], lease_seconds=lease)
        while True:
            self.check()
            delivery = consumer.get(timeout=0.1)
            if delivery is None:
                if self.stop_file.exists():
                    break
                continue
            head, _, padding = delivery.body.partition(b" ")
            message_id = head.decode()
            if padding not in (b"", LARGE_PADDING):
                raise AssertionError(f"message {message_id}: its large body came back as {len(padding)} other bytes")
            self.write(f"delivered {message_id} {int(delivery.redelivered)}")
            roll = self.rng.random()
            if roll < self.spec["slow_probability"]:
                time.sleep(lease * 1.3)  # longer than the lease: only renewal keeps it ours
            elif roll < self.spec["work_probability"]:
                time.sleep(self.rng.uniform(0, 0.02))
            delivery.ack()
            self.write(f"acked {message_id}")
        conn.close()


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    directory = Path(spec["dir"])
    try:
        worker = _Worker(spec)
        getattr(worker, spec["kind"])()
    except _Stop:
        os._exit(0)
    except BaseException:
        # Any exception at all, 'database is locked' included, is a failure the harness must see.
        errors = directory / "errors"
        errors.mkdir(exist_ok=True)
        partial = errors / f"{spec['name']}.partial"
        partial.write_text(traceback.format_exc())
        os.replace(partial, errors / f"{spec['name']}.txt")
        os._exit(3)


def own_exclusive_queue(db: str, out_dir: str) -> None:
    """For tests (spawned): declare a server-named exclusive queue, write its name to ``queue`` in ``out_dir``, and
    sleep until killed (at most 60 s)."""
    import litemq

    conn = litemq.connect(db)
    name = conn.declare_queue("", exclusive=True).queue
    partial = Path(out_dir) / "queue.partial"
    partial.write_text(name)
    os.replace(partial, Path(out_dir) / "queue")
    time.sleep(60)


# =============================================================================================================
# The harness
# =============================================================================================================

@dataclass
class _Proc:
    kind: str
    name: str
    uid: str
    popen: subprocess.Popen
    started_at: float
    """Wall time before it was started: its connection registered later (pids get reused in a long run)."""
    killed: bool = False
    reported: bool = False
    connection_id: Optional[str] = None
    """Its connection, once the harness has seen it registered (looked up by pid)."""
    taken_for_dead: bool = False


@dataclass
class _Death:
    """A killed worker whose connection the harness watches until litemq cleans up after it."""

    connection_id: str
    killed_at: float
    held: int
    released_at: Optional[float] = None
    reaped_at: Optional[float] = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_postgresql(url: str) -> bool:
    return engine_of(url) == "postgresql"


class _Reader:
    """Plain read-only SQL on the broker, one autocommit statement at a time (never holds a snapshot): sqlite3 on
    the file, or psycopg in the URL's schema. ``?`` marks a parameter on both."""

    def __init__(self, url: str) -> None:
        self.postgresql = on_postgresql(url)
        if self.postgresql:
            import psycopg

            server, schema = split_postgresql_url(url)
            self.db: Any = psycopg.connect(server, autocommit=True,
                                           options=f"-c search_path={schema} -c default_transaction_read_only=on")
        else:
            self.db = sqlite3.connect(f"file:{url}?mode=ro", uri=True, isolation_level=None, timeout=30,
                                      check_same_thread=False)

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        if self.postgresql:
            return list(self.db.execute(sql.replace("?", "%s"), params).fetchall())
        for attempt in range(50):
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                # The harness's own monitoring, not litemq: a reader can briefly see SQLITE_BUSY while a
                # killed writer's WAL index is recovered. Retry.
                if attempt == 49:
                    raise
                time.sleep(0.01)
        raise AssertionError("unreachable")

    def one(self, sql: str, *params: Any) -> Any:
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        self.db.close()


class Harness:
    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.dir = workdir
        self.db = config.url or str(workdir / "torture.db")
        self.postgresql = on_postgresql(self.db)
        if self.postgresql and config.cleanup_every:
            raise ValueError("--cleanup-every removes a file's lock directory: there is none on PostgreSQL")
        self.seed = config.seed if config.seed is not None else random.randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.result = Result(workdir=str(workdir), seed=self.seed)
        self.procs: list[_Proc] = []
        self.running: list[_Proc] = []
        """Started, and their end not yet seen by ``check_exits`` (so a long run's loop stays short)."""
        self.deaths: list[_Death] = []
        """Killed workers' connections not yet cleaned up after."""
        self.counter = 0
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.pop("LITEMQ_URL", None)
        budget = config.seconds + config.drain_seconds + 2 * config.stop_seconds + 120
        self.deadline = time.time() + budget
        self.reader: Optional[_Reader] = None

    def fail(self, message: str) -> None:
        self.result.failures.append(message)

    # --- workers
    def start(self, kind: str) -> _Proc:
        self.counter += 1
        name = f"{kind}-{self.counter:04d}"
        uid = uuid.uuid4().hex[:16]
        spec = {
            "kind": "produce" if kind == "producer" else "consume", "name": name, "uid": uid,
            "db": self.db, "dir": str(self.dir), "parent": os.getpid(), "deadline": self.deadline,
            "stop_file": f"stop-{kind}s", "seed": self.rng.randrange(1 << 32),
            "rate": self.config.rate, "prefetch": self.rng.randint(*self.config.prefetch),
            "lease_seconds": self.config.lease_seconds, "work_probability": self.config.work_probability,
            "slow_probability": self.config.slow_probability,
        }
        stderr = open(self.dir / "stderr" / f"{name}.txt", "wb")
        started_at = time.time()
        try:
            popen = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(spec)],
                                     env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=stderr, stderr=stderr)
        finally:
            stderr.close()
        proc = _Proc(kind, name, uid, popen, started_at)
        self.procs.append(proc)
        self.running.append(proc)
        self.result.workers_started += 1
        return proc

    def alive(self, kind: Optional[str] = None) -> list[_Proc]:
        return [p for p in self.running if p.popen.poll() is None and (kind is None or p.kind == kind)]

    def connection_of(self, proc: _Proc) -> Optional[str]:
        assert self.reader is not None
        return self.reader.one("SELECT id FROM litemq_connections WHERE pid = ? AND started_at >= ? "
                               "ORDER BY started_at DESC", proc.popen.pid, proc.started_at)

    def leases_of(self, connection_id: str) -> int:
        assert self.reader is not None
        return self.reader.one("SELECT count(*) FROM litemq_messages WHERE lease_owner >= ? AND lease_owner < ? "
                               "AND lease_token IS NOT NULL", connection_id + "/", connection_id + "0")

    def kill_one(self) -> None:
        """SIGKILL a random worker (half the time a consumer holding leases, if any) and start another."""
        assert self.reader is not None
        victim: Optional[_Proc] = None
        if self.rng.random() < 0.5:
            holders = {pid for (pid,) in self.reader.rows(
                "SELECT DISTINCT c.pid FROM litemq_messages m JOIN litemq_connections c "
                "ON m.lease_owner >= c.id || '/' AND m.lease_owner < c.id || '0' "
                "WHERE m.lease_token IS NOT NULL")}
            candidates = [p for p in self.alive("consumer") if p.popen.pid in holders]
            if candidates:
                victim = self.rng.choice(candidates)
        if victim is None:
            candidates = self.alive()
            if not candidates:
                return
            victim = self.rng.choice(candidates)
        connection_id = self.connection_of(victim)
        held = self.leases_of(connection_id) if connection_id else 0
        victim.killed = True
        killed_at = time.monotonic()
        os.kill(victim.popen.pid, signal.SIGKILL)
        victim.popen.wait()
        self.running.remove(victim)
        self.result.kills[victim.kind] += 1
        if held:
            self.result.kills_holding_leases += 1
        if connection_id:
            self.deaths.append(_Death(connection_id, killed_at, held))
        self.start(victim.kind)

    def clean_up(self) -> None:
        """What a careless cleanup script does: remove the lock directory, whoever is using it."""
        shutil.rmtree(self.db + "-litemq", ignore_errors=True)
        self.result.cleanups += 1

    def watch_deaths(self) -> None:
        assert self.reader is not None
        now = time.monotonic()
        self.deaths = [d for d in self.deaths if d.reaped_at is None or (d.held and d.released_at is None)]
        for death in self.deaths:
            if death.held and death.released_at is None:
                if self.leases_of(death.connection_id) == 0:
                    death.released_at = now
                    self.result.release_ms.append((now - death.killed_at) * 1000)
                elif now - death.killed_at > self.config.lease_seconds + STUCK_GRACE_SECONDS:
                    death.released_at = now
                    self.fail(f"stuck leases: connection {death.connection_id} was SIGKILLed "
                              f"{now - death.killed_at:.1f} s ago and still holds "
                              f"{self.leases_of(death.connection_id)} leases (lease_seconds "
                              f"{self.config.lease_seconds})")
            if death.reaped_at is None and self.reader.one(
                    "SELECT count(*) FROM litemq_connections WHERE id = ?", death.connection_id) == 0:
                death.reaped_at = now
                self.result.reap_ms.append((now - death.killed_at) * 1000)

    def check_invariants(self) -> None:
        """ready_count equals the rows without a lease (one statement, so one consistent snapshot)."""
        assert self.reader is not None
        for name, counter, actual, total in self.reader.rows(
                "SELECT q.name, q.ready_count, "
                "(SELECT count(*) FROM litemq_messages m WHERE m.queue = q.name AND m.lease_token IS NULL), "
                f"(SELECT count(*) FROM litemq_messages m WHERE m.queue = q.name) FROM {ready_counters(self.db)} q"):
            self.result.invariant_checks += 1
            self.result.max_backlog = max(self.result.max_backlog, total)
            if counter != actual:
                self.fail(f"queue {name!r}: ready_count is {counter} but {actual} messages are ready")
        if not self.postgresql:
            with contextlib.suppress(OSError):  # a stat, never an open: litemq's files are SQLite's alone
                self.result.max_wal_bytes = max(self.result.max_wal_bytes, os.stat(self.db + "-wal").st_size)
        self.check_live_connections()

    def check_live_connections(self) -> None:
        """A worker that is alive and not told to stop must still be registered: litemq must never take a live
        connection for dead (its leases would go to others, its consumers would be dropped)."""
        assert self.reader is not None
        rows = self.reader.rows("SELECT id, pid, started_at FROM litemq_connections")
        registered = {connection_id for connection_id, _, _ in rows}
        for proc in self.running:
            if proc.killed or proc.taken_for_dead or (self.dir / f"stop-{proc.kind}s").exists():
                continue
            if proc.connection_id is None:
                proc.connection_id = next((connection_id for connection_id, pid, started_at in rows
                                           if pid == proc.popen.pid and started_at >= proc.started_at), None)
            elif proc.connection_id not in registered and proc.popen.poll() is None:
                proc.taken_for_dead = True
                self.fail(f"{proc.name} (pid {proc.popen.pid}) is alive, but its connection {proc.connection_id} "
                          f"is no longer registered: another process took it for dead and cleaned up after it")

    def check_exits(self) -> None:
        """A worker that ended without being killed must have been told to stop, and exited 0."""
        for proc in list(self.running):
            code = proc.popen.poll()
            if code is None:
                continue
            self.running.remove(proc)
            if proc.killed:
                continue
            stopped = (self.dir / f"stop-{proc.kind}s").exists()
            if code != 0 or not stopped:
                proc.reported = True
                self.fail(f"{proc.name} (pid {proc.popen.pid}) exited by itself with status {code}"
                          f"{'' if stopped else ' before it was told to stop'}")

    def wait_exit(self, kind: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive(kind) and time.monotonic() < deadline:
            time.sleep(0.02)
        for proc in self.alive(kind):
            self.fail(f"{proc.name} (pid {proc.popen.pid}) did not exit within {timeout:.0f} s of its stop file")
            proc.killed = True
            os.kill(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()

    # --- the run
    def run(self) -> Result:
        import litemq

        for sub in ("logs", "errors", "stderr"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with litemq.connect(self.db) as conn:  # creates and migrates the file, so workers open a current one
            conn.declare_queue(QUEUE, durable=True)
        self.reader = _Reader(self.db)
        try:
            self._run(began)
        finally:
            for proc in self.alive():
                proc.killed = True
                os.kill(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
            self.reader.close()
        self.result.total_seconds = time.monotonic() - began
        self._analyse()
        self._check_strays()
        self.result.passed = not self.result.failures
        return self.result

    def _run(self, began: float) -> None:
        cfg = self.config
        for _ in range(cfg.producers):
            self.start("producer")
        for _ in range(cfg.consumers):
            self.start("consumer")
        start = time.monotonic()
        end = start + cfg.seconds
        next_kill = start + self.rng.uniform(*cfg.kill_every)
        next_cleanup = start + self.rng.uniform(*cfg.cleanup_every) if cfg.cleanup_every else float("inf")
        next_check = start
        next_progress = start + 10
        wal = 0
        while (now := time.monotonic()) < end:
            if now >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*cfg.kill_every)
            if now >= next_cleanup:
                assert cfg.cleanup_every is not None
                self.clean_up()
                next_cleanup = time.monotonic() + self.rng.uniform(*cfg.cleanup_every)
            self.watch_deaths()
            self.check_exits()
            if now >= next_check:
                self.check_invariants()
                next_check = now + INVARIANT_SECONDS
            if cfg.progress and now >= next_progress:
                next_progress = now + 10
                with contextlib.suppress(OSError):
                    wal = 0 if self.postgresql else os.stat(self.db + "-wal").st_size
                print(f"  {now - start:5.0f} s: {sum(self.result.kills.values())} kills, "
                      f"{self.result.workers_started} workers started, backlog "
                      f"{self.reader.one('SELECT count(*) FROM litemq_messages')}, WAL {wal / 1e6:.1f} MB, "
                      f"failures so far {len(self.result.failures)}", flush=True)
            time.sleep(LOOP_SECONDS)
        self.result.seconds = time.monotonic() - start
        stop_began = time.monotonic()

        # Stop the producers, let the consumers drain, stop them.
        (self.dir / "stop-producers").write_text("")
        self.wait_exit("producer", cfg.stop_seconds)
        drain_deadline = time.monotonic() + cfg.drain_seconds
        next_check = 0.0
        while (left := self.reader.one("SELECT count(*) FROM litemq_messages")) and \
                time.monotonic() < drain_deadline:
            self.watch_deaths()
            self.check_exits()
            if time.monotonic() >= next_check:
                self.check_invariants()
                next_check = time.monotonic() + INVARIANT_SECONDS
            time.sleep(0.01)
        if left:
            leased = self.reader.one("SELECT count(*) FROM litemq_messages WHERE lease_token IS NOT NULL")
            self.fail(f"consumers did not drain the queue within {cfg.drain_seconds:.0f} s: {left} messages left "
                      f"({leased} of them leased){self._lease_holders()}")
        self.watch_deaths()
        (self.dir / "stop-consumers").write_text("")
        self.wait_exit("consumer", cfg.stop_seconds)
        self.check_exits()
        self.result.drain_seconds = time.monotonic() - stop_began

    def _lease_holders(self) -> str:
        """Who holds the leases left (for a failure's message): each owner's worker, whether it lives, and when its
        leases expire."""
        lines = []
        now = time.time()
        for owner, held, expires in self.reader.rows(
                "SELECT lease_owner, count(*), max(lease_expires_at) FROM litemq_messages "
                "WHERE lease_token IS NOT NULL GROUP BY lease_owner"):
            connection_id = str(owner).rsplit("/", 1)[0]
            worker = next((p for p in self.procs if p.connection_id == connection_id), None)
            registered = self.reader.rows("SELECT pid FROM litemq_connections WHERE id = ?", connection_id)
            state = ("no longer registered" if not registered else
                     f"pid {registered[0][0]}, " + ("alive" if _pid_alive(registered[0][0]) else "gone"))
            who = f"{worker.name}{' (killed)' if worker.killed else ''}" if worker else "not a worker of this run"
            lines.append(f"\n  {held} held by {owner} ({who}; {state}), leases expire in {expires - now:+.1f} s")
        return "".join(lines)

    def _final_drain(self) -> list[str]:
        """With a fresh connection (which also cleans up after any dead connection), take what is left."""
        import litemq

        from litemq.store.lockfiles import MISSING_GRACE_SECONDS

        drained = []
        with litemq.connect(self.db, lease_seconds=self.config.lease_seconds) as conn:
            # A worker killed while its lock file was removed is dead only once the grace for a missing lock
            # file has passed and the kernel says its pid is gone: this connection's background sweeps reap it.
            deadline = time.monotonic() + MISSING_GRACE_SECONDS + 10
            while True:
                while (delivery := conn.get(QUEUE)) is not None:
                    drained.append(delivery.body.partition(b" ")[0].decode())
                    delivery.ack()
                with contextlib.closing(_Reader(self.db)) as reader:
                    others = reader.one("SELECT count(*) FROM litemq_connections WHERE id != ?",
                                        conn._session.connection_id)
                if not others or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        return drained

    def _analyse(self) -> None:
        res = self.result
        try:
            drained = self._final_drain()
        except Exception:
            self.fail(f"the harness's own drain failed:\n{traceback.format_exc()}")
            drained = []
        res.left_over = len(drained)
        if drained:
            self.fail(f"{len(drained)} messages were still in the queue after the consumers drained it and "
                      f"stopped, e.g. {drained[:5]}")
        self._check_file()

        # Worker errors and stderr.
        for path in sorted((self.dir / "errors").glob("*.txt")):
            self.fail(f"{path.stem} raised:\n{path.read_text().rstrip()}")
        for path in sorted((self.dir / "stderr").glob("*.txt")):
            text = path.read_text(errors="replace").strip()
            if text:
                self.fail(f"{path.stem} wrote to stderr:\n{text}")

        # The logs.
        producers = {p.uid: p for p in self.procs if p.kind == "producer"}
        published: set[str] = set()
        last_logged: dict[str, int] = {}
        malformed: list[str] = []
        for proc in producers.values():
            numbers = []
            for line in self._lines(proc):
                uid, _, n = line.partition(":")
                if uid != proc.uid or not n.isdigit():
                    malformed.append(f"{proc.name}: {line!r}")
                    continue
                numbers.append(int(n))
                published.add(line)
            if numbers != list(range(len(numbers))):
                self.fail(f"{proc.name}'s log is not 0..n in order")
            last_logged[proc.uid] = len(numbers) - 1
        res.published = len(published)

        fresh = collections.Counter()
        delivered = collections.Counter()
        acked = collections.Counter()
        for proc in self.procs:
            if proc.kind != "consumer":
                continue
            for line in self._lines(proc):
                parts = line.split(" ")
                if len(parts) == 3 and parts[0] == "delivered" and parts[2] in ("0", "1"):
                    delivered[parts[1]] += 1
                    res.delivered_lines += 1
                    if parts[2] == "0":
                        fresh[parts[1]] += 1
                    else:
                        res.redeliveries += 1
                elif len(parts) == 2 and parts[0] == "acked":
                    acked[parts[1]] += 1
                else:
                    malformed.append(f"{proc.name}: {line!r}")
        if malformed:
            self.fail(f"{len(malformed)} malformed log lines, e.g. {malformed[:5]}")
        res.acked = len(acked)
        res.redelivered_messages = sum(1 for n in delivered.values() if n > 1)
        taken = set(delivered) | set(drained)
        res.acked_unlogged = len(set(delivered) - set(acked) - set(drained))

        lost = published - taken
        if lost:
            self.fail(f"{len(lost)} published messages were never delivered and are gone: "
                      f"{sorted(lost)[:10]}")
        twice_fresh = {m: n for m, n in fresh.items() if n > 1}
        if twice_fresh:
            self.fail(f"{len(twice_fresh)} messages were delivered more than once with redelivered=False: "
                      f"{dict(list(twice_fresh.items())[:10])}")
        twice_acked = {m: n for m, n in acked.items() if n > 1}
        if twice_acked:
            self.fail(f"{len(twice_acked)} messages were acked more than once: {dict(list(twice_acked.items())[:10])}")
        unseen_acks = set(acked) - set(delivered)
        if unseen_acks:
            self.fail(f"{len(unseen_acks)} acked ids have no delivered line: {sorted(unseen_acks)[:10]}")
        for message_id in sorted(taken - published):
            uid, _, n = message_id.partition(":")
            proc = producers.get(uid)
            if proc is not None and proc.killed and n.isdigit() and int(n) == last_logged[uid] + 1:
                res.unlogged_publishes += 1
            else:
                self.fail(f"delivered id {message_id!r} was never published (not the in-flight message of a "
                          f"killed producer)")

    def _lines(self, proc: _Proc) -> Iterator[str]:
        path = self.dir / "logs" / f"{proc.name}.log"
        if not path.exists():
            return
        text = path.read_text()
        if text and not text.endswith("\n"):
            self.fail(f"{proc.name}'s log ends in a partial line: {text.rsplit(chr(10), 1)[-1]!r}")
            text = text.rsplit("\n", 1)[0]
        yield from text.splitlines()

    def _check_file(self) -> None:
        with contextlib.closing(_Reader(self.db)) as reader:
            checks = {
                "messages": "SELECT count(*) FROM litemq_messages",
                "leased messages": "SELECT count(*) FROM litemq_messages WHERE lease_token IS NOT NULL",
                "large bodies": "SELECT count(*) FROM litemq_bodies",
                "registered connections": "SELECT count(*) FROM litemq_connections",
                "registered consumers": "SELECT count(*) FROM litemq_consumers",
            }
            for what, sql in checks.items():
                count = reader.one(sql)
                if count:
                    self.fail(f"{count} {what} remain at the end: {reader.rows(sql.replace('count(*)', '*'))[:5]}")
            for name, counter, actual in reader.rows(
                    "SELECT q.name, q.ready_count, (SELECT count(*) FROM litemq_messages m "
                    f"WHERE m.queue = q.name AND m.lease_token IS NULL) FROM {ready_counters(self.db)} q"):
                if counter != actual:
                    self.fail(f"queue {name!r}: ready_count is {counter} at the end but {actual} messages are ready")
            queues = [name for (name,) in reader.rows("SELECT name FROM litemq_queues")]
            if queues != [QUEUE]:
                self.fail(f"queues at the end: {queues}, expected [{QUEUE!r}]")
            if not self.postgresql:
                integrity = reader.rows("PRAGMA integrity_check")
                if integrity != [("ok",)]:
                    self.fail(f"PRAGMA integrity_check: {integrity[:10]}")
        if self.postgresql:
            return
        locks = self.db + "-litemq"
        leftover = sorted(os.listdir(locks)) if os.path.isdir(locks) else []
        if leftover:
            self.fail(f"{len(leftover)} liveness lock files remain in {locks}: {leftover[:5]}")

    def _check_strays(self) -> None:
        for proc in self.procs:
            code = proc.popen.poll()
            if code is None:
                self.fail(f"{proc.name} (pid {proc.popen.pid}) is still running")
            elif proc.killed and code != -signal.SIGKILL:
                self.fail(f"{proc.name} was killed but exited with status {code}")
            elif not proc.killed and code != 0 and not proc.reported:
                self.fail(f"{proc.name} exited with status {code}")
        mark = str(self.dir).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat", "rb") as f:
                    zombie = f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
            except OSError:
                continue
            if mark in cmdline and b"_worker" in cmdline and not zombie:
                self.fail(f"stray process {entry} of this run is still alive: {cmdline[:200]!r}")


def run(config: Config) -> Result:
    """Run the torture; ``config.workdir`` (kept) or a temporary directory (removed when the run passes)."""
    if config.workdir is not None:
        workdir = Path(config.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return Harness(config, workdir).run()
    workdir = Path(tempfile.mkdtemp(prefix="litemq-torture-"))
    result = Harness(config, workdir).run()
    if result.passed:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir += " (removed)"
    return result


def _span(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        _worker_main(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, help="how long to keep killing (the soak: 10)")
    parser.add_argument("--seconds", type=float, help="the same in seconds")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=6)
    parser.add_argument("--kill-every", type=_span, default=(0.2, 0.8), metavar="MIN:MAX",
                        help="seconds between kills, drawn uniformly (default 0.2:0.8)")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s per producer (default 200)")
    parser.add_argument("--lease-seconds", type=float, default=5.0)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--cleanup-every", type=_span, metavar="MIN:MAX",
                        help="also remove the lock directory (as a careless cleanup script would) every MIN-MAX s")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dir", help="keep the run's files here (default: a temporary directory, removed on PASS)")
    parser.add_argument("--url", help="the broker: a postgresql:// URL naming an empty schema, or a path (default: "
                                      "torture.db in the run's directory)")
    args = parser.parse_args(argv)
    if args.url and on_postgresql(args.url) and args.cleanup_every:
        parser.error("--cleanup-every removes a file's lock directory: there is none on PostgreSQL")
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 1)
    config = Config(producers=args.producers, consumers=args.consumers, seconds=seconds,
                    kill_every=args.kill_every, rate=args.rate, lease_seconds=args.lease_seconds,
                    drain_seconds=args.drain_seconds, cleanup_every=args.cleanup_every, seed=args.seed,
                    workdir=args.dir, progress=True, url=args.url)
    cleanup = (f", the lock directory removed every {config.cleanup_every[0]:g}-{config.cleanup_every[1]:g} s"
               if config.cleanup_every else "")
    where = f" on {config.url}" if config.url else ""
    print(f"litemq torture{where}: {config.producers} producers, {config.consumers} consumers, a SIGKILL every "
          f"{config.kill_every[0]:g}-{config.kill_every[1]:g} s{cleanup} for {seconds:g} s", flush=True)
    result = run(config)
    print(result.summary())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
