"""The workloads, written once against the client interface of systems.py. Each runs inside one fresh process per
(system, workload) row: ``run(system, spec)`` does the row's runs, each on a fresh store, and returns its result.

Timed loops stop early when their time budget (``spec["budget"]`` seconds) runs out; the result then says how many
messages were measured. Checks (counts, duplicates, lost messages) are made outside the timed part and reported as
``problems``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from . import measure
from .measure import Budget, body, bodies, median, parse, percentile
from .systems import FANOUT_EXCHANGE, FANOUT_QUEUES, QUEUE, TOPIC_EXCHANGE, TOPIC_QUEUES, System, make

BATCH = 100
TOPIC_BINDINGS = 1000
FILL_CHUNK = 10000
IDLE_SECONDS = 0.1
"""A consumer of i stops when nothing came for this long (not counted: its clock stops at its last message)."""
DRAIN_FLOOR = 20
"""i drains its whole queue, with no time budget: its processes get n / this many seconds more to do it (the
slowest PostgreSQL peer drains at tens of messages a second)."""

Result = dict[str, Any]


@contextmanager
def fresh_store(system: System, spec: dict[str, Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    """A new store holding ``depth`` messages in the bench queue.

    For a system whose store is files, a copy of the run's store of that depth for this system's family (made once
    in a process of its own: no row pays for creating a schema or filling a queue, or has what that imports in its
    memory); otherwise made and filled here."""
    directory = tempfile.mkdtemp(prefix=f"litemq-bench-{system.key}-", dir=spec.get("tmp"))
    cfg: Optional[dict[str, Any]] = None
    try:
        template = spec.get("templates", {}).get(str(depth))
        if template:
            cfg = copy_store(template, directory)
        else:
            cfg = system.new_store(directory, spec)
            if depth:
                client = system.client(cfg)
                fill(client, depth, spec["size"])
                client.close()
                system.filled(cfg)
        yield cfg
    finally:
        try:
            if cfg is not None:
                system.drop_store(cfg)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def repetitions(spec: dict[str, Any]) -> Iterator[int]:
    """The row's runs: ``spec["runs"]`` of them, but no new one once the row has taken ``spec["row_seconds"]``
    (the median of a few runs where that is cheap)."""
    started = time.monotonic()
    for run in range(spec["runs"]):
        if run and time.monotonic() - started > spec["row_seconds"]:
            return
        yield run


def summary(runs: list[Result], problems: list[str], note: str = "", **extra: Any) -> Result:
    """The row's figures: medians over the runs of msgs/s and latency percentiles."""
    return {"msgs_per_s": median(r.get("msgs_per_s") for r in runs),
            "p50_ms": median(r.get("p50_ms") for r in runs),
            "p99_ms": median(r.get("p99_ms") for r in runs),
            "n": min((r.get("n", 0) for r in runs), default=0),
            "runs": runs, "problems": problems, "note": note, **extra}


def capped(result: Result, wanted: int) -> Result:
    if result["n"] < wanted:
        result["capped"] = True
    return result


# =============================================================================================================
# a, b: publishing
# =============================================================================================================

def _published(client: Any, done: int, t0: float, problems: list[str]) -> dict[str, Any]:
    """The end of a publishing run: wait until every publish is in the queue, time it, check the depth."""
    client.settle([QUEUE], done)
    secs = time.perf_counter() - t0
    if client.depth() != done:
        problems.append(f"{client.depth()} queued after {done} publishes")
    client.close()
    return {"n": done, "secs": secs, "msgs_per_s": done / secs}


def publish_one(system: System, spec: dict[str, Any]) -> Result:
    n, runs, problems = spec["n"], [], []
    for _ in repetitions(spec):
        payload = bodies(n, spec["size"])
        with fresh_store(system, spec) as cfg:
            client = system.client(cfg)
            publish, limit, done = client.publish, Budget(spec["budget"]), 0
            t0 = time.perf_counter()
            for data in payload:
                if limit.over(done):
                    break
                publish(data)
                done += 1
            runs.append(_published(client, done, t0, problems))
    return summary(runs, problems, system.note("a"))


def publish_batches(system: System, spec: dict[str, Any]) -> Result:
    n, runs, problems, note = spec["n"], [], [], system.note("b")
    for _ in repetitions(spec):
        payload = bodies(n, spec["size"])
        with fresh_store(system, spec) as cfg:
            client = system.client(cfg)
            note = client.batch_note or note
            publish_batch, limit, done = client.publish_batch, Budget(spec["budget"]), 0
            t0 = time.perf_counter()
            for chunk, start in enumerate(range(0, n, BATCH)):
                if limit.over(chunk):
                    break
                batch = payload[start:start + BATCH]
                publish_batch(batch)
                done += len(batch)
            runs.append(_published(client, done, t0, problems))
    return summary(runs, problems, note)


# =============================================================================================================
# c, d: consuming in one process
# =============================================================================================================

def fill(client: Any, count: int, size: int, queue: str = QUEUE) -> None:
    for start in range(0, count, FILL_CHUNK):
        client.fill(bodies(min(FILL_CHUNK, count - start), size, start), queue)


def get_ack_loop(client: Any, n: int, budget: float, problems: list[str]) -> Result:
    get, ack, limit, done = client.get, client.ack, Budget(budget), 0
    t0 = time.perf_counter()
    for i in range(n):
        if limit.over(i):
            break
        message = get()
        if message is None:
            problems.append(f"queue empty after {i} of {n} gets")
            break
        ack(message[1])
        done += 1
    secs = time.perf_counter() - t0
    return {"n": done, "secs": secs, "msgs_per_s": done / secs if secs else None}


def get_ack(system: System, spec: dict[str, Any]) -> Result:
    n, runs, problems = spec["n"], [], []
    for _ in repetitions(spec):
        with fresh_store(system, spec, n) as cfg:
            client = system.client(cfg)
            runs.append(get_ack_loop(client, n, spec["budget"], problems))
            client.close()
    return capped(summary(runs, problems, system.note("c")), n)


def consume_prefetch(system: System, spec: dict[str, Any]) -> Result:
    n, runs, problems = spec["n"], [], []
    for _ in repetitions(spec):
        with fresh_store(system, spec, n) as cfg:
            client = system.client(cfg)
            receiver = client.receiver(BATCH)
            limit, done, seen = Budget(spec["budget"]), 0, set()
            t0 = time.perf_counter()
            for i in range(n):
                if limit.over(i):
                    break
                message = receiver.next(10.0)
                if message is None:
                    problems.append(f"nothing came after {i} of {n}")
                    break
                receiver.ack(message[1])
                seen.add(message[0][:12])
                done += 1
            receiver.close()
            secs = time.perf_counter() - t0
            if len(seen) != done:
                problems.append(f"{done - len(seen)} duplicates")
            client.close()
        runs.append({"n": done, "secs": secs, "msgs_per_s": done / secs})
    return capped(summary(runs, problems, system.note("d")), n)


# =============================================================================================================
# e, i: several processes
# =============================================================================================================

def _child(target: Callable[..., Result], pipe: Any, *args: Any) -> None:
    try:
        pipe.send(target(*args))
    except BaseException:  # noqa: BLE001 - the parent reports it
        pipe.send({"error": traceback.format_exc()[-2000:]})


def producer(key: str, engine: str, cfg: dict[str, Any], n: int, size: int, rate: float, batch: int, budget: float,
             published: Any, ready: Any, go: Any) -> Result:
    """Publish ``n`` messages, paced at ``rate`` per second (0: as fast as it can, stopping when the budget runs
    out); then tell the consumer how many through ``published``."""
    client = make(key, engine).client(cfg)
    ready.set()
    go.wait()
    limit, sent = Budget(budget), 0
    t0 = time.perf_counter()
    try:
        if batch > 1:
            for chunk, start in enumerate(range(0, n, batch)):
                if limit.over(chunk):
                    break
                client.publish_batch([body(i, size) for i in range(start, min(n, start + batch))])
                sent = min(n, start + batch)
        else:
            publish, interval = client.publish, (1.0 / rate if rate else 0.0)
            for i in range(n):
                if interval:
                    wait = t0 + i * interval - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                elif limit.over(i):
                    break
                publish(body(i, size))
                sent += 1
        secs = time.perf_counter() - t0
        client.close()
    finally:
        published.value = sent
    return {"secs": secs, "sent": sent}


def consumer(key: str, engine: str, cfg: dict[str, Any], until: Optional[str], prefetch: int, idle: float,
             timeout: float, published: Any, ready: Any, go: Any) -> Result:
    """Receive and ack each message, until ``published`` says how many there were and that many came (``until``
    "published"), or (None) until none comes for ``idle`` seconds."""
    client = make(key, engine).client(cfg)
    receiver = client.receiver(prefetch)
    ready.set()
    go.wait()
    deadline = time.time() + timeout
    latencies, seqs, errors = [], [], 0
    last = time.time()

    def take(message: tuple[Any, Any], now: float) -> None:
        data, handle = message
        receiver.ack(handle)
        seq, sent = parse(data)
        latencies.append(now - sent)
        seqs.append(seq)

    while until is None or published.value < 0 or len(seqs) < published.value:
        try:
            message = receiver.next(idle if until is None else 0.2)
        except Exception as exc:  # noqa: BLE001 - a busy database in a library that does not wait: count, retry
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            errors += 1
            continue
        now = time.time()
        if message is None:
            if until is None or now > deadline:
                break
            continue
        take(message, now)
        last = now
    for message in receiver.stop():
        last = time.time()
        take(message, last)
    receiver.close()
    client.close()
    return {"seqs": seqs, "latencies": latencies, "last": last, "errors": errors}


def spawn(jobs: list[tuple[Callable[..., Result], tuple[Any, ...]]], timeout: float) -> tuple[float, list[Result]]:
    """Start each job in a spawned process, wait until all are ready, say go: (go time, results in order).
    Each job's target gets its arguments, then a shared integer (-1 to start with), its ready event and go."""
    import multiprocessing  # here: most rows start no process

    context = multiprocessing.get_context("spawn")
    go = context.Event()
    shared = context.Value("q", -1)
    started = []
    for target, args in jobs:
        ready = context.Event()
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(target, send) + args + (shared, ready, go), daemon=True)
        process.start()
        started.append((process, ready, receive))
    for process, ready, _ in started:
        if not ready.wait(120):
            raise RuntimeError("a benchmark process did not start")
    time.sleep(0.05)  # all of them waiting on go
    t_go = time.time()
    go.set()
    results = []
    for process, _, receive in started:
        results.append(receive.recv() if receive.poll(timeout) else {"error": "no result in time"})
        process.join(30)
        if process.is_alive():
            process.kill()  # it would hold its store open (a PostgreSQL schema could not be dropped)
            process.join(5)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise RuntimeError("\n".join(failed))
    return t_go, results


def producer_consumer(system: System, spec: dict[str, Any], paced: bool) -> Result:
    n = spec["paced_n"] if paced else spec["n"]
    rate = spec["rate"] if paced else 0.0
    batch = getattr(system, "batch", 1)
    runs, problems = [], []
    for run in repetitions(spec):
        if paced and run:
            break
        with fresh_store(system, spec) as cfg:
            timeout = spec["budget"] * 4 + (n / rate if rate else 0) + 60
            t_go, (received, sent) = spawn([
                (consumer, (system.key, spec["engine"], cfg, "published", BATCH, 1.0, timeout)),
                (producer, (system.key, spec["engine"], cfg, n, spec["size"], rate, batch, spec["budget"])),
            ], timeout + 60)
        seqs = received["seqs"]
        if len(seqs) != sent["sent"] or len(set(seqs)) != len(seqs):
            problems.append(f"received {len(seqs)} ({len(set(seqs))} distinct) of {sent['sent']}")
        span = received["last"] - t_go
        latencies = received["latencies"]
        figures = {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
                   "max_ms": max(latencies) * 1000}
        if not paced:  # an unpaced producer outruns the consumer: latency then only measures the backlog
            figures = {"backlog_" + k: v for k, v in figures.items()}
        runs.append({"n": len(seqs), "secs": span, "msgs_per_s": None if paced else len(seqs) / span,
                     "publish_secs": sent["secs"], "busy_errors": received["errors"], **figures})
    return capped(summary(runs, problems, system.note("e-lat" if paced else "e")), n)


def throughput_two_processes(system: System, spec: dict[str, Any]) -> Result:
    return producer_consumer(system, spec, paced=False)


def latency_paced(system: System, spec: dict[str, Any]) -> Result:
    return producer_consumer(system, spec, paced=True)


def consumers(system: System, spec: dict[str, Any], count: int) -> Result:
    n, runs, problems = spec["n"], [], []
    for _ in repetitions(spec):
        with fresh_store(system, spec, n) as cfg:
            timeout = spec["budget"] * 4 + 60
            t_go, results = spawn([(consumer, (system.key, spec["engine"], cfg, None, 1, IDLE_SECONDS, timeout))]
                                  * count,
                                  timeout + 60 + n / DRAIN_FLOOR)
        seqs = [seq for r in results for seq in r["seqs"]]
        distinct = len(set(seqs))
        if distinct != n:
            problems.append(f"{distinct} of {n} messages received")
        if len(seqs) != distinct:
            problems.append(f"{len(seqs) - distinct} delivered twice")
        span = max(r["last"] for r in results) - t_go
        runs.append({"n": distinct, "secs": span, "msgs_per_s": distinct / span,
                     "per_process": [len(r["seqs"]) for r in results],
                     "duplicates": len(seqs) - distinct, "busy_errors": sum(r["errors"] for r in results)})
    return summary(runs, problems, system.note(f"i-{count}"))


def one_consumer(system: System, spec: dict[str, Any]) -> Result:
    return consumers(system, spec, 1)


def four_consumers(system: System, spec: dict[str, Any]) -> Result:
    return consumers(system, spec, 4)


# =============================================================================================================
# f, g: exchanges
# =============================================================================================================

def exchange_publish(system: System, spec: dict[str, Any], kind: str) -> Result:
    n, runs, problems = spec["n"], [], []
    batch = getattr(system, "batch", 1)
    if kind == "fanout":
        exchange, queues = FANOUT_EXCHANGE, FANOUT_QUEUES
        bindings = [(queue, "") for queue in queues]
        keys = [""] * n
        copies = len(queues)
    else:
        exchange, queues = TOPIC_EXCHANGE, TOPIC_QUEUES
        bindings = [(queues[i % len(queues)], f"stock.s{i}.*") for i in range(TOPIC_BINDINGS)]
        keys = [f"stock.s{i % TOPIC_BINDINGS}.nyse" for i in range(n)]  # each matches one binding
        copies = 1
    for _ in repetitions(spec):
        payload = bodies(n, spec["size"])
        with fresh_store(system, spec) as cfg:
            client = system.client(cfg)
            client.declare_exchange(exchange, kind, bindings)
            limit, done = Budget(spec["budget"]), 0
            t0 = time.perf_counter()
            if batch > 1:
                for chunk, start in enumerate(range(0, n, batch)):
                    if limit.over(chunk):
                        break
                    client.publish_batch(payload[start:start + batch], exchange, keys[start:start + batch])
                    done = min(n, start + batch)
            else:
                publish = client.publish
                for i in range(n):
                    if limit.over(i):
                        break
                    publish(payload[i], exchange, keys[i])
                    done += 1
            client.settle(queues, done * copies)
            secs = time.perf_counter() - t0
            stored = sum(client.depth(queue) for queue in queues)
            if stored != done * copies:
                problems.append(f"{stored} copies stored for {done} messages (expected {done * copies})")
            client.close()
        runs.append({"n": done, "secs": secs, "msgs_per_s": done / secs, "copies": done * copies})
    return summary(runs, problems, system.note("f" if kind == "fanout" else "g"))


def fanout(system: System, spec: dict[str, Any]) -> Result:
    return exchange_publish(system, spec, "fanout")


def topic(system: System, spec: dict[str, Any]) -> Result:
    return exchange_publish(system, spec, "topic")


# =============================================================================================================
# h: claiming from a shallow and from a deep queue
# =============================================================================================================

def build_template(system: System, spec: dict[str, Any]) -> Result:
    """A store holding ``spec["depth"]`` messages (0: the blank store), in ``spec["template"]``, for rows to copy."""
    directory = spec["template"]
    os.makedirs(directory, exist_ok=True)
    t0 = time.perf_counter()
    cfg = system.new_store(directory, spec)
    if spec["depth"]:
        client = system.client(cfg)
        fill(client, spec["depth"], spec["size"])
        client.close()
    with open(os.path.join(directory, "cfg.json"), "w", encoding="utf-8") as out:
        json.dump(cfg, out)
    return {"secs": time.perf_counter() - t0, "depth": spec["depth"]}


def copy_store(template: str, directory: str) -> dict[str, Any]:
    with open(os.path.join(template, "cfg.json"), encoding="utf-8") as source:
        cfg = json.load(source)
    shutil.copytree(template, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cfg.json"))
    # A copy is dirty in the page cache until written out, and a store's first fsync (SQLite's first checkpoint)
    # would write all of it inside the timed loop: 1,000,000 queued messages cost a run a tenth of a second.
    for root, _, names in os.walk(directory):
        for name in names:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    return {k: v.replace(template, directory) if isinstance(v, str) else v for k, v in cfg.items()}


def claim_rate(system: System, spec: dict[str, Any], depth: int) -> Result:
    claims = min(spec["claims"], depth)
    runs, problems = [], []
    if system.files:
        for _ in repetitions(spec):
            with fresh_store(system, spec, depth) as cfg:
                client = system.client(cfg)
                runs.append(get_ack_loop(client, claims, spec["budget"], problems))
                client.close()
    else:  # no file to copy: fill the queue once, then measure one block after another, topping it up between
        with fresh_store(system, spec, depth) as cfg:
            client = system.client(cfg)
            for run in repetitions(spec):
                if run:
                    fill(client, depth - client.depth(), spec["size"])
                runs.append(get_ack_loop(client, claims, spec["budget"], problems))
            client.close()
    return capped(summary(runs, problems, system.note("h"), depth=depth), claims)


def shallow(system: System, spec: dict[str, Any]) -> Result:
    return claim_rate(system, spec, spec["shallow"])


def deep(system: System, spec: dict[str, Any]) -> Result:
    return claim_rate(system, spec, spec["deep"])


# =============================================================================================================
# j: a one-shot process
# =============================================================================================================

def one_shot(system: System, spec: dict[str, Any]) -> Result:
    import resource
    import subprocess

    script = system.oneshot_script()
    walls, problems = [], []
    with fresh_store(system, spec) as cfg:
        argument = json.dumps(cfg)
        message = body(0, spec["size"]).decode("ascii")
        # Installed packages carry their bytecode; a shell with PYTHONDONTWRITEBYTECODE would make a package run
        # from its source tree compile on every start, which no installed user pays.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        for attempt in range(spec["oneshots"] + 1):  # the first, not timed, leaves the modules compiled and cached
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", script, argument, message], capture_output=True,
                                  text=True, timeout=120, env=env)
            if attempt:
                walls.append((time.perf_counter() - t0) * 1000)
            if done.returncode:
                raise RuntimeError(f"one-shot process failed:\n{done.stderr[-2000:]}")
        client = system.client(cfg)
        if client.depth() != spec["oneshots"] + 1:
            problems.append(f"{client.depth()} messages after {spec['oneshots'] + 1} one-shot publishes")
        client.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / (1024 * 1024 if sys.platform == "darwin"
                                                                         else 1024)
    return {"msgs_per_s": None, "p50_ms": percentile(walls, 50), "p99_ms": percentile(walls, 99),
            "n": len(walls), "runs": [{"wall_ms": w} for w in walls], "problems": problems,
            "note": "", "peak_rss_mb": children}


# =============================================================================================================
# k: large bodies
# =============================================================================================================

def large_bodies(system: System, spec: dict[str, Any], size: int, n: int, label: str) -> Result:
    runs, problems = [], []
    for _ in repetitions(spec):
        with fresh_store(system, spec) as cfg:
            client = system.client({**cfg, "split": True})  # the floor keeps large bodies out of the claimed rows
            publish, limit, sent = client.publish, Budget(spec["budget"]), 0
            t0 = time.perf_counter()
            for i in range(n):
                if limit.over(i):
                    break
                publish(body(i, size))
                sent += 1
            client.settle([QUEUE], sent)
            t1 = time.perf_counter()
            get, ack, got = client.get, client.ack, 0
            for i in range(sent):
                message = get()
                if message is None:
                    problems.append(f"queue empty after {i} of {sent} gets")
                    break
                ack(message[1])
                if len(message[0]) != size:
                    problems.append(f"a body came back with {len(message[0])} bytes of {size}")
                got += 1
            t2 = time.perf_counter()
            client.close()
        runs.append({"n": got, "publish_per_s": sent / (t1 - t0), "get_ack_per_s": got / (t2 - t1) if got else None,
                     "msgs_per_s": got / (t2 - t0), "mb_per_s": got * size / (t2 - t0) / 1e6})
    result = capped(summary(runs, problems), n)
    result["note"] = "; ".join(x for x in (
        f"publish {median(r['publish_per_s'] for r in runs):,.0f}/s, "
        f"get+ack {median(r['get_ack_per_s'] for r in runs) or 0:,.0f}/s", system.note(f"k-{label}")) if x)
    return result


def bodies_10k(system: System, spec: dict[str, Any]) -> Result:
    return large_bodies(system, spec, 10 * 1024, spec["n_10k"], "10KB")


def bodies_1m(system: System, spec: dict[str, Any]) -> Result:
    return large_bodies(system, spec, 1024 * 1024, spec["n_1m"], "1MB")


# =============================================================================================================
# l: an idle waiting consumer
# =============================================================================================================

IDLE_WARM_SECONDS = 0.5
"""l's consumer first waits this long, not measured: it has started, prepared its statements and gone to sleep."""


def idle_consumer(system: System, spec: dict[str, Any]) -> Result:
    """The CPU an idle consumer costs while it waits on an empty queue: this process's (every thread of it) and,
    on PostgreSQL, its server sessions'; the median of the runs."""
    runs, problems = [], []
    for _ in repetitions(spec):
        with fresh_store(system, spec) as cfg:
            client = system.client(cfg)
            receiver = client.receiver(1)
            try:
                came = receiver.next(IDLE_WARM_SECONDS)
                sessions = system.server_sessions(cfg)
                before = time.process_time(), measure.cpu_seconds(sessions), time.monotonic()
                came = came or receiver.idle(spec["idle"])
                after = time.process_time(), measure.cpu_seconds(sessions), time.monotonic()
            finally:
                receiver.stop()
                receiver.close()
                client.close()
        if came is not None:
            problems.append("a message came from an empty queue")
        wall = after[2] - before[2]
        runs.append({"process_pct": 100 * (after[0] - before[0]) / wall, "server_pct": 100 * (after[1] - before[1]) / wall,
                     "server_sessions": len(sessions), "seconds": wall})
    total = median(r["process_pct"] + r["server_pct"] for r in runs)
    note = f"{total:.2f} % of a core"
    sessions = runs[0]["server_sessions"]
    if sessions:
        note += (f" (process {median(r['process_pct'] for r in runs):.2f}, its {sessions} server "
                 f"session{'s' if sessions > 1 else ''} {median(r['server_pct'] for r in runs):.2f})")
    note = "; ".join(x for x in (note, system.note("l")) if x)
    return {"msgs_per_s": None, "p50_ms": None, "p99_ms": None, "idle_cpu_pct": total, "n": len(runs),
            "runs": runs, "problems": problems, "note": note}


WORKLOADS: dict[str, Callable[[System, dict[str, Any]], Result]] = {
    "a": publish_one, "b": publish_batches, "c": get_ack, "d": consume_prefetch,
    "e": throughput_two_processes, "e-lat": latency_paced, "f": fanout, "g": topic,
    "h-shallow": shallow, "h-deep": deep, "i-1": one_consumer, "i-4": four_consumers, "j": one_shot,
    "k-10KB": bodies_10k, "k-1MB": bodies_1m, "l": idle_consumer, "build": build_template,
}


def run(system: System, spec: dict[str, Any]) -> Result:
    result = WORKLOADS[spec["workload"]](system, spec)
    result.setdefault("peak_rss_mb", measure.peak_rss_mb())
    return result
