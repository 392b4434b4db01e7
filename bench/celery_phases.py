"""``python -m bench --celery-phases``: where ``--celery-latency``'s milliseconds go, step by step, on litemq and on
RabbitMQ.

The latency step runs as in ``--celery-latency``, with a few functions of the sender and of the worker wrapped (the
worker through a ``sitecustomize`` put on its path) so that each writes the time it starts and ends to a file of
its process. For each paced task, the first time each mark is written between its ``send_task`` and its start
gives the steps; the table is each step's median over the tasks. A wrapped function costs a few microseconds (one
write each way): the steps are larger by that much. Functions are named as they are now; one renamed since is
left out (its step then merges with the next).
"""

from __future__ import annotations

import collections
import importlib
import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable

from .celery_throughput import RABBITMQ, Broker, idle_latency, rabbitmq_reachable

TRACE_ENV = "BENCH_CELERY_TRACE"
"""The directory the marks go to (set: this process and the workers trace)."""
HOOKS: dict[str, list[tuple[str, str, str]]] = {
    "litemq": [
        ("litemq.kombu", "Channel.basic_publish", "publish"),
        ("litemq.store.sqlite_connection", "_Transaction.__enter__", "begin"),
        ("litemq.store.sqlite_connection", "_Transaction.__exit__", "commit"),
        ("litemq.store.sqlite", "SQLiteStore._ring", "ring"),
        ("litemq.kombu_hub", "HubWaiting._on_doorbell", "doorbell"),
        ("litemq.kombu_hub", "HubWaiting._found_work", "found work"),
        ("litemq.consumer", "Consumer._fill", "claim"),
        ("litemq.kombu", "Transport._dispatch", "to kombu"),
    ],
    "rabbitmq": [
        ("amqp.channel", "Channel.basic_publish", "publish"),
        ("amqp.connection", "Connection.drain_events", "read frames"),
        ("amqp.channel", "Channel._on_basic_deliver", "to kombu"),
    ],
}
"""What each broker's processes mark: (module, Class.function, name)."""
SITECUSTOMIZE = "import bench.celery_phases as phases\nphases.install()\n"


def install() -> None:
    """Wrap the functions of the broker named by $BENCH_CELERY_BROKER (in a worker: from its sitecustomize)."""
    directory = os.environ.get(TRACE_ENV)
    if not directory:
        return
    out = open(os.path.join(directory, f"marks-{os.getpid()}"), "a", buffering=1)

    def mark(name: str) -> None:
        out.write(f"{time.time():.6f} {name}\n")

    broker = "litemq" if os.environ.get("BENCH_CELERY_BROKER", "litemq").startswith("litemq") else "rabbitmq"
    for module, path, name in HOOKS[broker]:
        try:
            owner: Any = importlib.import_module(module)
            *classes, function = path.split(".")
            for part in classes:
                owner = getattr(owner, part)
            _wrap(owner, function, name, mark)
        except (ImportError, AttributeError):
            continue  # renamed since: its step merges with the next
    _wrap_poll(mark)
    _wrap_task_start(mark)


def _wrap(owner: Any, attribute: str, name: str, mark: Callable[[str], None]) -> None:
    original = getattr(owner, attribute)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        mark(name + " >")
        try:
            return original(*args, **kwargs)
        finally:
            mark(name + " <")

    setattr(owner, attribute, wrapped)


def _wrap_poll(mark: Callable[[str], None]) -> None:
    from kombu.utils import eventio

    original = eventio._epoll.poll

    def poll(self: Any, timeout: Any) -> Any:
        events = original(self, timeout)
        if events:
            mark("hub woke <")
        return events

    eventio._epoll.poll = poll  # type: ignore[method-assign]


def _wrap_task_start(mark: Callable[[str], None]) -> None:
    from celery.app import trace

    build = trace.build_tracer

    def build_tracer(*args: Any, **kwargs: Any) -> Any:
        run = build(*args, **kwargs)

        def traced(*a: Any, **k: Any) -> Any:
            mark("celery trace >")
            return run(*a, **k)

        return traced

    trace.build_tracer = build_tracer


def steps(directory: str, runs: list[tuple[float, float, float]], paced: int
          ) -> dict[str, list[tuple[float, float]]]:
    """Each step's (duration, end after send_task), in microseconds, over the last ``paced`` tasks."""
    marks: list[tuple[float, str]] = []
    for name in os.listdir(directory):
        if name.startswith("marks-"):
            with open(os.path.join(directory, name)) as lines:
                marks.extend((float(line.split(" ", 1)[0]), line.split(" ", 1)[1].strip()) for line in lines)
    marks.sort()
    found: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for sent, started in sorted((sent, started) for sent, started, _ in runs)[-paced:]:
        first: dict[str, float] = {}
        for at, name in marks:
            if sent <= at <= started:
                first.setdefault(name, at)
        previous = ("send_task", sent)
        for name, at in sorted(first.items(), key=lambda item: item[1]):
            found[f"{previous[0]} -> {name}"].append(((at - previous[1]) * 1e6, (at - sent) * 1e6))
            previous = (name, at)
        found[f"{previous[0]} -> task start"].append(((started - previous[1]) * 1e6, (started - sent) * 1e6))
    return found


def main(paced: int = 200) -> int:
    import litemq.kombu  # noqa: F401  (the litemq:// scheme)

    print(f"litemq benchmark: python -m bench --celery-phases ({paced} paced tasks; microseconds, medians over the "
          "tasks; a step seen in fewer than half of them is left out)")
    directory = tempfile.mkdtemp(prefix="litemq-bench-celery-")
    hooks = os.path.join(directory, "hooks")
    os.makedirs(hooks)
    with open(os.path.join(hooks, "sitecustomize.py"), "w") as sitecustomize:
        sitecustomize.write(SITECUSTOMIZE)
    brokers = [Broker("litemq (SQLite file)", f"litemq:///{directory}/litemq.db", directory)]
    if rabbitmq_reachable():
        brokers.append(Broker("RabbitMQ 127.0.0.1", RABBITMQ, directory))
    try:
        for broker in brokers:
            marks = tempfile.mkdtemp(dir=directory)
            os.environ[TRACE_ENV] = marks
            os.environ["BENCH_CELERY_BROKER"] = broker.url
            broker.extra_path = [hooks]
            try:
                install()  # this process sends (what it wrapped for the broker before marks nothing now)
                found = idle_latency(broker, paced)
            finally:
                os.environ.pop(TRACE_ENV, None)
                os.environ.pop("BENCH_CELERY_BROKER", None)
            print(f"\n{broker.name}: p50 {found['p50'] * 1000:.2f} ms, p99 {found['p99'] * 1000:.2f} ms "
                  f"(load average {os.getloadavg()[0]:.2f})")
            seen = [(statistics.median(end for _, end in found), step, statistics.median(d for d, _ in found))
                    for step, found in steps(marks, broker.runs(), paced).items() if len(found) >= paced // 2]
            for end, step, duration in sorted(seen):
                print(f"  {step:40s} {duration:8.1f}   (ends at {end:7.1f})")
            broker.cleanup()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0

