"""``python -m bench --celery``: Celery on litemq against Celery on RabbitMQ and on kombu's SQLAlchemy transport
(on an SQLite file), in one run on one machine.

For each broker: N no-op tasks (``bench.celery_tasks.tick``) are sent with ``send_task`` (``apply_async`` by name) (the send rate is a
row), then one ``celery worker -P solo`` starts, says it is ready and waits for the word go: tasks/s is N over the
time from go to the last task's end. The same worker, now idle, gets --paced tasks one at
a time, 20 a second, each carrying its send time: the latency row is from ``send_task`` (``apply_async`` by name) to the task starting.
Then the idle worker's CPU over 5 s. Then N more tasks and 4 solo workers, started together once all four are
ready; then N more and one prefork worker with four children (``-c 4``), Celery's usual deployment. Celery's defaults otherwise (prefetch multiplier 4, early acks), no result backend; mingle, gossip
and heartbeats off for all (they are RabbitMQ and Redis only).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

from .measure import machine, percentile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
PACE_SECONDS = 0.05
IDLE_SECONDS = 5.0
TICK = "bench.celery_tasks.tick"
WAIT_SECONDS = 120.0


class Broker:
    def __init__(self, name: str, url: str, directory: str) -> None:
        self.name = name
        self.url = url
        self.directory = directory
        self.queue = f"bench-{uuid.uuid4().hex[:12]}"  # RabbitMQ is shared: a queue of this run's own
        self.out = ""
        self.workers: list[subprocess.Popen[bytes]] = []
        self.extra_path: list[str] = []
        """Directories the workers import from after the checkout (``celery_phases``'s sitecustomize)."""

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, *self.extra_path]), BENCH_CELERY_BROKER=self.url,
                    BENCH_CELERY_QUEUE=self.queue,
                    BENCH_CELERY_OUT=self.out)

    def fresh_output(self, label: str) -> None:
        self.out = os.path.join(self.directory, f"{self.queue}-{label}")
        os.makedirs(self.out)

    def app(self) -> Any:
        from celery import Celery

        app = Celery("bench", broker=self.url, set_as_current=False)
        app.conf.update(task_default_queue=self.queue, task_ignore_result=True)
        return app

    def send(self, app: Any, n: int) -> float:
        """Send n tasks; the tasks per second of sending them (the connection opened before)."""
        with app.producer_pool.acquire(block=True) as producer:
            producer.connection.ensure_connection()  # a new file's schema is made here, not in the timing
        started = time.perf_counter()
        for _ in range(n):
            app.send_task(TICK, (time.time(),))
        return n / (time.perf_counter() - started)

    def start(self, count: int, pool: str = "solo", concurrency: int = 1) -> None:
        for i in range(count):
            log = open(os.path.join(self.out, f"worker-{i}.log"), "wb")
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker", "-P", pool, "-c", str(concurrency),
                 # A node name of its own per run, so that no worker meets the control queue of a stopped one.
                 "-n", f"w{i}-{os.path.basename(self.out)}@%h", "-Q", self.queue, "-l", "WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"],
                cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()

    def ready(self) -> int:
        """How many workers said they are ready."""
        return sum(name.startswith("ready-") for name in os.listdir(self.out))

    def runs(self) -> list[tuple[float, float, float]]:
        rows = []
        for name in os.listdir(self.out):
            if name.startswith("runs-"):
                with open(os.path.join(self.out, name)) as records:
                    rows.extend(tuple(map(float, line.split())) for line in records if line.count(" ") == 2)
        return rows  # type: ignore[return-value]

    def wait(self, what: str, done: Any) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not done():
            for worker in self.workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"{self.name}: a worker exited ({worker.returncode}) while waiting for {what}"
                                       f"; see {self.out}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what} within {WAIT_SECONDS:g} s; see {self.out}")
            time.sleep(0.02)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        self.workers = []

    def throughput(self, n: int, workers: int, pool: str = "solo", concurrency: int = 1) -> dict[str, float]:
        """Send n tasks, then start ``workers`` workers: tasks/s once all of them are ready."""
        app = self.app()
        sent = self.send(app, n)
        close(app)
        self.start(workers, pool, concurrency)
        self.wait(f"{workers} ready workers", lambda: self.ready() == workers)
        go = time.time()
        open(os.path.join(self.out, "go"), "w").close()
        self.wait(f"{n} tasks run", lambda: len(self.runs()) >= n)
        return {"sent_per_s": sent, "tasks_per_s": n / (max(end for _, _, end in self.runs()) - go)}

    def latency(self, paced: int) -> dict[str, float]:
        """With the running worker idle: ``paced`` tasks one at a time; seconds from apply_async to start."""
        app = self.app()
        before = len(self.runs())
        app.send_task(TICK, (time.time(),))  # the client's connection and the worker's wait warmed up
        self.wait("warm-up task", lambda: len(self.runs()) > before)
        marks: list[float] = []
        for _ in range(paced):
            sent = time.time()
            marks.append(sent)
            app.send_task(TICK, (sent,))
            time.sleep(PACE_SECONDS)
        self.wait(f"{paced} paced tasks", lambda: len(self.runs()) >= before + 1 + paced)
        close(app)
        wanted = set(marks)
        delays = [started - sent for sent, started, _ in self.runs() if sent in wanted]
        return {"p50": statistics.median(delays), "p99": percentile(delays, 99) or float("nan"),
                "max": max(delays)}

    def idle_cpu(self) -> float:
        """The share of a core the (one) idle worker uses, over IDLE_SECONDS."""
        pid = self.workers[0].pid
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        before, started = cpu(), time.monotonic()
        time.sleep(IDLE_SECONDS)
        return (cpu() - before) / (time.monotonic() - started)

    def cleanup(self) -> None:
        if self.url.startswith("amqp://"):
            from kombu import Connection

            with Connection(self.url) as connection:
                connection.default_channel.queue_delete(self.queue)


def close(app: Any) -> None:
    """Close a Celery app's connections: they are in kombu's pools, shared by every app on the same URL in the
    process (``app.close()`` leaves them open)."""
    from kombu import pools

    pools.reset()
    app.close()


def rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1.0):
            return True
    except OSError:
        return False


def measure(broker: Broker, n: int, paced: int, runs: int) -> dict[str, Any]:
    """The broker's figures: throughputs the median of ``runs`` runs; latency and idle CPU from the first."""
    result: dict[str, Any] = {}
    sent: list[float] = []
    one: list[float] = []
    four: list[float] = []
    prefork: list[float] = []
    try:
        for run in range(runs):
            broker.fresh_output(f"one-{run}")
            single = broker.throughput(n, 1)
            sent.append(single["sent_per_s"])
            one.append(single["tasks_per_s"])
            if run == 0:
                result["latency"] = broker.latency(paced)
                result["idle_cpu"] = broker.idle_cpu()
            broker.stop()
            broker.fresh_output(f"four-{run}")
            four.append(broker.throughput(n, 4)["tasks_per_s"])
            broker.stop()
            broker.fresh_output(f"prefork-{run}")
            prefork.append(broker.throughput(n, 1, "prefork", 4)["tasks_per_s"])
            broker.stop()
        result.update(sent=statistics.median(sent), one=statistics.median(one), four=statistics.median(four),
                      prefork=statistics.median(prefork),
                      runs={"sent": sent, "one": one, "four": four, "prefork": prefork})
    except Exception as exc:  # a broker that fails is a row that says so, not a lost run
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        broker.stop()
        try:
            broker.cleanup()
        except Exception as exc:
            result.setdefault("error", f"cleanup: {exc}")
    return result


def idle_latency(broker: Broker, paced: int) -> dict[str, float]:
    """The latency step alone: one idle solo worker, ``paced`` tasks (the worker stopped after)."""
    broker.fresh_output(f"latency-{uuid.uuid4().hex[:6]}")
    app = broker.app()
    with app.producer_pool.acquire(block=True) as producer:
        producer.connection.ensure_connection()
    close(app)
    try:
        broker.start(1)
        broker.wait("1 ready worker", lambda: broker.ready() == 1)
        open(os.path.join(broker.out, "go"), "w").close()
        return broker.latency(paced)
    finally:
        broker.stop()


def latency_main(paced: int = 200, runs: int = 3) -> int:
    """``--celery-latency``: the latency step alone, litemq and RabbitMQ taking turns ``runs`` times (turns, so that
    other work on the machine weighs on both alike); each run's p50 and p99, then their medians."""
    import litemq.kombu  # noqa: F401  (the litemq:// scheme)

    if not rabbitmq_reachable():
        print("RabbitMQ not reachable at 127.0.0.1:5672: nothing to compare with")
        return 1
    print(f"litemq benchmark: python -m bench --celery-latency ({paced} paced tasks, {runs} runs taking turns)")
    directory = tempfile.mkdtemp(prefix="litemq-bench-celery-")
    brokers = [Broker("litemq (SQLite file)", f"litemq:///{directory}/litemq.db", directory),
               Broker("RabbitMQ 127.0.0.1", RABBITMQ, directory)]
    figures: dict[str, list[dict[str, float]]] = {broker.name: [] for broker in brokers}
    try:
        for run in range(runs):
            for broker in brokers:
                found = idle_latency(broker, paced)
                figures[broker.name].append(found)
                print(f"  run {run + 1} {broker.name}: p50 {found['p50'] * 1000:.2f} ms, p99 "
                      f"{found['p99'] * 1000:.2f} ms (load average {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        for broker in brokers:
            broker.stop()
            try:
                broker.cleanup()
            except Exception as exc:
                print(f"{broker.name}: cleanup: {exc}")
        shutil.rmtree(directory, ignore_errors=True)
    for name, found in figures.items():
        print(f"{name}: median p50 {statistics.median(f['p50'] for f in found) * 1000:.2f} ms, median p99 "
              f"{statistics.median(f['p99'] for f in found) * 1000:.2f} ms")
    return 0


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows = [("apply_async, tasks/s sent", "sent", "{:,.0f}"),
            ("tasks/s, 1 worker", "one", "{:,.0f}"),
            ("tasks/s, 4 workers", "four", "{:,.0f}"),
            ("tasks/s, 1 prefork worker -c 4", "prefork", "{:,.0f}"),
            ("apply_async -> start, p50 ms", ("latency", "p50"), "{:.1f}"),
            ("apply_async -> start, p99 ms", ("latency", "p99"), "{:.1f}"),
            ("idle worker, % of a core", "idle_cpu", "{:.2f}")]

    def value(result: dict[str, Any], key: Any) -> Optional[float]:
        if isinstance(key, tuple):
            inner = result.get(key[0]) or {}
            found = inner.get(key[1])
            return None if found is None else found * 1000
        found = result.get(key)
        return None if found is None else (found * 100 if key == "idle_cpu" else found)

    width = max(len(label) for label, _, _ in rows) + 2
    column = max(len(name) for name in names) + 3
    lines = ["".ljust(width) + "".join(name.rjust(column) for name in names)]
    for label, key, fmt in rows:
        cells = []
        for name in names:
            found = value(results[name], key)
            cells.append("-" if found is None else fmt.format(found))
        lines.append(label.ljust(width) + "".join(cell.rjust(column) for cell in cells))
    errors = [f"{name}: {result['error']}" for name, result in results.items() if "error" in result]
    return "\n".join(lines + errors)


def main(n: int = 2000, paced: int = 40, runs: int = 3) -> int:
    import celery
    import kombu

    import litemq
    import litemq.kombu  # noqa: F401  (the litemq:// scheme)

    print(f"litemq benchmark: python -m bench --celery (n={n:,} tasks per throughput run, median of {runs} runs; "
          f"{paced} paced tasks)")
    info = machine()
    print(f"machine: {info.get('cpu')}, {info.get('cpus')} cores, Python {sys.version.split()[0]}", flush=True)
    directory = tempfile.mkdtemp(prefix="litemq-bench-celery-")
    brokers = [Broker("litemq (SQLite file)", f"litemq:///{directory}/litemq.db", directory),
               Broker("kombu SQLAlchemy/SQLite", f"sqla+sqlite:///{directory}/sqla.db", directory)]
    if rabbitmq_reachable():
        brokers.append(Broker("RabbitMQ 127.0.0.1", RABBITMQ, directory))
    else:
        print("RabbitMQ not reachable at 127.0.0.1:5672: its column is left out")
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    try:
        for broker in brokers:
            print(f"  {broker.name} ...", flush=True)
            results[broker.name] = measure(broker, n, paced, runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print()
    print(table(results))
    print()
    print(f"versions: celery {celery.__version__}, kombu {kombu.__version__}, litemq {litemq.__version__}")
    print(f"runtime: {time.monotonic() - started:.0f} s")
    return 1 if any("error" in result for result in results.values()) else 0
