"""``python -m bench``: litemq against the raw sqlite3 floor, persist-queue, litequeue and RabbitMQ, on one machine
in one run, printed as one table (and written as JSON with ``--json PATH``); ``--engine postgresql``: litemq on a
PostgreSQL server against a raw psycopg floor, pgqueuer and procrastinate.

Workloads (100-byte bodies unless stated; ``--size`` changes that):

  a  publish one message at a time
  b  publish 100 per batch or transaction (a system without one publishes 100 one by one: the row says so)
  c  get + ack, one at a time
  d  consume with prefetch 100, acking each message
  e  one producer process and one consumer process: throughput, and latency p50/p99 paced at --rate msg/s
  f  publish to a fanout exchange bound to 10 queues
  g  publish to a topic exchange with 1,000 bindings (each message matches one)
  h  get + ack 1,000 messages from a queue holding 1,000, and from one holding --deep
  i  4 consumer processes against 1, prefetch 1, draining one queue of --n messages
  j  a one-shot process: start Python, import, open an existing store, publish one message, exit (wall time)
  k  10 KB and 1 MB bodies: publish then get + ack
  l  an idle consumer waiting on an empty queue: the CPU it costs (every thread of its process and, on PostgreSQL,
     its server sessions), in % of a core

Systems: the floor (stdlib sqlite3 running the least SQL for the work: bench/floor.py), one message per
transaction and 100 per transaction; litemq through its native API and through litemq.pika; persist-queue's
SQLiteAckQueue with its default synchronous setting and with NORMAL; litequeue; RabbitMQ through pika (durable
queue, persistent messages, manual acks) without and with publisher confirms, when it is reachable.

With --engine postgresql (on the server at --pg-url): the floor is psycopg running the least SQL for the work
(bench/floor_postgres.py: INSERT; UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING; DELETE; LISTEN/NOTIFY where a
consumer waits in another process), one message per transaction and 100 per transaction; litemq through its
native API and litemq.pika on a postgresql:// URL; pgqueuer and procrastinate, enqueuing with their synchronous
calls and consuming with their workers (bench/peers_postgres.py), where a workload fits them. Each run's store is
a fresh schema, dropped after it.

Each (system, workload) row runs in a fresh process (so its peak RSS is its own and imports do not mix), each run
on a fresh temporary store, and reports the median of ``--runs`` runs. The ratio is the row's speed over the
floor's for the same work (1/txn floor; the 100/txn floor for b): below 1 is slower than the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

from . import measure
from .row import MARK
from .systems import ENGINES, System, select

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FULL = {"n": 20000, "runs": 3, "deep": 1_000_000, "paced_n": 500, "budget": 10.0, "oneshots": 10,
        "n_10k": 2000, "n_1m": 100, "idle": 5.0, "timeout": 1800.0}
QUICK = {"n": 1000, "runs": 1, "deep": 10_000, "paced_n": 30, "budget": 0.5, "oneshots": 3,
         "n_10k": 100, "n_1m": 5, "idle": 1.0, "timeout": 300.0}

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

PROFILE_N = 5000
"""Operations per pass of --profile."""
BRK_N = 5000
"""Messages per run of --brk (a process's own ~90 brk calls are then under 0.02 per message)."""

CELERY_N = {"full": 2000, "quick": 300}
"""Tasks per throughput run of --celery."""
CELERY_PACED = {"full": 40, "quick": 10}
"""Paced tasks of --celery's latency rows, unless --paced-n says (40 give a p99 of little weight: 200 for a verdict)."""

CELERY_LATENCY_PACED = 200
"""Paced tasks per run of --celery-latency: enough for a p99."""

QUICK_LEAVES_OUT = ("litemq-full", "persist-queue-default", "rabbitmq-confirms")
"""--quick runs one variant of each system (litemq and persist-queue with NORMAL; RabbitMQ without confirms), unless
--systems names them."""

WORKLOAD_IDS = ["a", "b", "c", "d", "e", "e-lat", "f", "g", "h-shallow", "h-deep", "i-1", "i-4", "j", "k-10KB",
                "k-1MB", "l"]
LATENCY_ONLY = {"e-lat", "j"}
ROW_SECONDS = 20.0
"""A row makes no further run once it has taken this long (its median is then of fewer runs; the JSON has each)."""
PREFILLED = {"c", "d", "i-1", "i-4"}
"""Workloads that start from a queue of --n messages (a copy of a store filled once per run of the command)."""


def workload_label(workload: str, settings: dict[str, Any]) -> str:
    return {
        "a": "a  publish, 1 per call",
        "b": "b  publish, 100 per batch",
        "c": "c  get + ack, 1 at a time",
        "d": "d  consume, prefetch 100",
        "e": "e  1 producer + 1 consumer process",
        "e-lat": f"e  latency at {settings['rate']:g} msg/s",
        "f": "f  fanout to 10 queues",
        "g": "g  topic, 1,000 bindings",
        "h-shallow": f"h  get + ack, {settings['shallow']:,} queued",
        "h-deep": f"h  get + ack, {settings['deep']:,} queued",
        "i-1": "i  1 consumer process",
        "i-4": "i  4 consumer processes",
        "j": "j  one-shot process (ms)",
        "k-10KB": "k  10 KB bodies",
        "k-1MB": "k  1 MB bodies",
        "l": f"l  idle consumer, {settings['idle']:g} s",
    }[workload]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run (under a minute): n={QUICK['n']}, 1 run, a {QUICK['deep']:,}-message "
                             f"deep queue, {QUICK['paced_n']} paced messages, {QUICK['budget']:g} s per timed loop; "
                             f"one variant of litemq and persist-queue (NORMAL) and of RabbitMQ (no confirms) unless "
                             f"--systems names others")
    parser.add_argument("--n", type=int, help=f"messages per run (default {FULL['n']:,}; --quick {QUICK['n']:,})")
    parser.add_argument("--size", type=int, default=100, help="body bytes, except in k (default 100)")
    parser.add_argument("--runs", type=int, help="runs per row, the median is shown (default 3; --quick 1)")
    parser.add_argument("--deep", type=int, help=f"messages in h's deep queue (default {FULL['deep']:,}; "
                                                 f"--quick {QUICK['deep']:,})")
    parser.add_argument("--rate", type=float, default=100.0, help="the paced rate of e's latency row (100 msg/s)")
    parser.add_argument("--paced-n", type=int, help=f"messages in e's paced run (default {FULL['paced_n']}; "
                                                    f"--quick {QUICK['paced_n']}); with --celery, the paced tasks "
                                                    f"of its latency rows (default {CELERY_PACED['full']})")
    parser.add_argument("--budget", type=float,
                        help=f"seconds a timed loop may run before it stops and reports what it did (default "
                             f"{FULL['budget']:g}; --quick {QUICK['budget']:g})")
    parser.add_argument("--only", help="workloads to run, e.g. a,c or h (default all: a-l)")
    parser.add_argument("--systems", help="systems to run: floor, litemq, persist-queue, litequeue, rabbitmq, or "
                                          "one variant (floor-1, litemq-pika, rabbitmq-confirms, ...); on "
                                          "postgresql: floor, litemq, pgqueuer, procrastinate; default all")
    parser.add_argument("--engine", choices=ENGINES, default="sqlite",
                        help="where the stores live: SQLite files (default) or schemas on a PostgreSQL server")
    parser.add_argument("--pg-url", default=None,
                        help="the PostgreSQL server of --engine postgresql (default "
                             "postgresql://postgres@127.0.0.1:5432/test); each run gets a fresh schema on it")
    parser.add_argument("--rabbitmq", default="127.0.0.1:5672", help="RabbitMQ host:port (guest/guest)")
    parser.add_argument("--json", metavar="PATH", help="also write every row, with each run's figures, as JSON")
    parser.add_argument("--profile", metavar="WORKLOAD",
                        help="instead: where one workload's time goes (a, b or c; bench/profile.py): CPU split "
                             "between SQLite, the interpreter and the kernel, statements and WAL pages per "
                             f"operation, the costliest functions; on litemq unless --systems names one system; "
                             f"--n operations (default {PROFILE_N:,})")
    parser.add_argument("--brk", action="store_true",
                        help="allocator churn, counted (bench/allocator.py): every row's processes run under strace, "
                             "which counts their brk calls per message; exits 1 when a row of a, b, c or d makes "
                             "more than the threshold it prints. Without --only and --systems: rows a and c of "
                             f"litemq; --n defaults to {BRK_N:,}")
    parser.add_argument("--celery", action="store_true",
                        help="instead: Celery tasks/s through 1 and 4 workers and apply_async-to-start latency, on "
                             "litemq, RabbitMQ and kombu's SQLAlchemy transport (bench/celery_throughput.py); --n "
                             f"tasks per throughput run (default {CELERY_N['full']:,}; --quick {CELERY_N['quick']})")
    parser.add_argument("--celery-latency", action="store_true",
                        help="instead: --celery's latency step alone, litemq and RabbitMQ taking turns --runs times "
                             f"(default 3), --paced-n tasks each (default {CELERY_LATENCY_PACED})")
    parser.add_argument("--celery-phases", action="store_true",
                        help="instead: where --celery-latency's milliseconds go, step by step (publish, ring, wake, "
                             "claim, hand-out to kombu, task start), on litemq and RabbitMQ (bench/celery_phases.py)")
    args = parser.parse_args(argv)
    if args.celery_latency or args.celery_phases:
        args.celery_paced = args.paced_n or CELERY_LATENCY_PACED
    if args.profile and args.n is None:
        args.n = PROFILE_N
    if args.brk:
        from .allocator import DEFAULT_SYSTEMS, DEFAULT_WORKLOADS, strace_missing

        missing = strace_missing()
        if missing:
            parser.error(f"--brk counts brk calls under strace: {missing}")
        args.n = BRK_N if args.n is None else args.n
        args.runs = 1 if args.runs is None else args.runs
        args.only = args.only or DEFAULT_WORKLOADS
        args.systems = args.systems or DEFAULT_SYSTEMS
    if args.celery:
        args.celery_n = args.n or CELERY_N["quick" if args.quick else "full"]
        args.celery_paced = args.paced_n or CELERY_PACED["quick" if args.quick else "full"]
    preset = QUICK if args.quick else FULL
    for name in ("n", "runs", "deep", "paced_n", "budget"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    if args.size < measure.HEADER_BYTES:
        parser.error(f"--size must be at least {measure.HEADER_BYTES} (a body carries its number and send time)")
    if args.n < 1 or args.runs < 1 or args.deep < 1:
        parser.error("--n, --runs and --deep must be positive")
    try:
        args.workloads = choose_workloads(args.only)
        args.system_list = select(args.systems, args.engine)
        if args.quick and not args.systems:
            args.system_list = [s for s in args.system_list if s.key not in QUICK_LEAVES_OUT]
    except ValueError as exc:
        parser.error(str(exc))
    host, _, port = args.rabbitmq.rpartition(":")
    args.rabbitmq_address = (host or "127.0.0.1", int(port))
    if args.pg_url is None:
        args.pg_url = DEFAULT_PG_URL
    elif args.engine != "postgresql":
        parser.error("--pg-url is for --engine postgresql")
    elif "schema=" in args.pg_url.partition("?")[2]:
        parser.error("--pg-url names the server and database: each run makes a schema of its own, so leave out "
                     "schema=")
    return args


def choose_workloads(only: Optional[str]) -> list[str]:
    if not only:
        return list(WORKLOAD_IDS)
    wanted = [token.strip() for token in only.split(",") if token.strip()]
    chosen = [w for w in WORKLOAD_IDS if any(w == token or w.split("-")[0] == token for token in wanted)]
    unknown = [t for t in wanted if not any(w == t or w.split("-")[0] == t for w in WORKLOAD_IDS)]
    if unknown:
        raise ValueError(f"unknown workload {', '.join(unknown)}; choose from a-l or {', '.join(WORKLOAD_IDS)}")
    return chosen


# =============================================================================================================
# Running rows
# =============================================================================================================

def child_environment() -> dict[str, str]:
    """The environment of every measured process: this checkout's litemq first on the path, and compiled modules
    cached as an installed package has them (where PYTHONDONTWRITEBYTECODE forbids writing them beside the
    sources, they go to a cache directory of their own instead)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if env.pop("PYTHONDONTWRITEBYTECODE", None) and "PYTHONPYCACHEPREFIX" not in env:
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "litemq-bench-pycache")
    return env


def run_row(spec: dict[str, Any], timeout: float, strace: bool = False) -> dict[str, Any]:
    """Run one row in a fresh process; its result, or {"error": ...}. ``strace``: count the brk calls of the row's
    processes (``brk_calls`` in the result)."""
    env = child_environment()
    command = [sys.executable, "-m", "bench.row", json.dumps(spec)]
    summary = None
    if strace:
        from .allocator import traced

        fd, summary = tempfile.mkstemp(prefix="litemq-bench-strace-", suffix=".txt")
        os.close(fd)
        command = traced(command, summary)
    try:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the row and the processes it started
            process.communicate()
            return {"error": f"timed out after {timeout:g} s"}
        if summary is not None:
            from .allocator import brk_calls

            with open(summary, encoding="utf-8") as counted:
                calls = brk_calls(counted.read())
    finally:
        if summary is not None:
            os.unlink(summary)
    for line in out.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK):])
            if summary is not None:
                result["brk_calls"] = calls
            return result
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return {"error": (lines[-1] if lines else f"exit status {process.returncode}"), "stderr": err[-4000:]}


def short(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = {"n": args.n, "size": args.size, "runs": args.runs, "deep": args.deep, "shallow": 1000,
                         "claims": 1000, "rate": args.rate, "paced_n": args.paced_n, "budget": args.budget,
                         "oneshots": QUICK["oneshots"] if args.quick else FULL["oneshots"],
                         "n_10k": min(args.n, (QUICK if args.quick else FULL)["n_10k"]),
                         "n_1m": min(args.n, (QUICK if args.quick else FULL)["n_1m"]),
                         "idle": (QUICK if args.quick else FULL)["idle"],
                         "row_seconds": ROW_SECONDS,
                         "quick": args.quick, "engine": args.engine}
        if args.engine == "postgresql":
            self.settings["pg_url"] = args.pg_url
        self.pg_prefix = f"litemq_bench_{uuid.uuid4().hex[:8]}"
        """Every schema of this run starts with it, so the run can drop what a killed row left behind."""
        self.timeout = (QUICK if args.quick else FULL)["timeout"]
        self.tmp = tempfile.mkdtemp(prefix="litemq-bench-")
        self.rows: list[dict[str, Any]] = []
        self.versions: dict[str, str] = {}
        self.templates: dict[str, dict[str, str]] = {}

    def spec(self, system: System, workload: str, **extra: Any) -> dict[str, Any]:
        return {**self.settings, "system": system.key, "workload": workload, "tmp": self.tmp,
                "rabbitmq": list(self.args.rabbitmq_address), "pg_prefix": self.pg_prefix, **extra}

    def progress(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def run(self) -> None:
        options = {"rabbitmq": self.args.rabbitmq_address, "pg_url": self.args.pg_url}
        unavailable = {s.key: s.available(options) for s in self.args.system_list}
        todo = [(w, s) for w in self.args.workloads for s in self.args.system_list]
        try:
            for number, (workload, system) in enumerate(todo, 1):
                row = {"workload": workload, "label": workload_label(workload, self.settings),
                       "system": system.key, "system_label": system.label, "note": system.note(workload)}
                if workload in system.not_applicable:
                    row.update(status="n/a", note=system.not_applicable[workload])
                elif unavailable[system.key]:
                    row.update(status="skipped", note=unavailable[system.key])
                else:
                    extra = {}
                    if system.files:
                        depths = [0]
                        if workload.startswith("h-"):
                            depths.append(self.settings[workload[2:]])
                        elif workload in PREFILLED:
                            depths.append(self.settings["n"])
                        extra["templates"] = self.template(system, depths)
                        if "error" in extra["templates"]:
                            row.update(status="error", note=short(extra["templates"]["error"]))
                            self.rows.append(row)
                            self.progress(f"[{number:3}/{len(todo)}] {workload:9} {system.key:22} {describe(row)}")
                            continue
                    started = time.monotonic()
                    result = run_row(self.spec(system, workload, **extra), self.timeout, strace=self.args.brk)
                    row["secs"] = round(time.monotonic() - started, 2)
                    if "error" in result:
                        row.update(status="error", note=short(result["error"]), error=result)
                    else:
                        self.versions.update(result.pop("versions", {}))
                        if "brk_calls" in result:
                            from .allocator import messages

                            result["brk_messages"] = messages(result)
                            result["brk_per_message"] = (result["brk_calls"] / result["brk_messages"]
                                                         if result["brk_messages"] else None)
                        note = result.pop("note", "") or row["note"]
                        row.update(status="ok", **result)
                        row["note"] = note
                        if result.get("capped"):
                            row["note"] = "; ".join(x for x in (row["note"], f"budget: {result['n']:,} msgs") if x)
                        if result.get("problems"):
                            row["note"] = "; ".join(x for x in (row["note"], "PROBLEM: " + result["problems"][0])
                                                    if x)
                self.rows.append(row)
                self.progress(f"[{number:3}/{len(todo)}] {workload:9} {system.key:22} {describe(row)}")
                self.drop_templates(system.family, todo[number:])
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.args.engine == "postgresql" and not all(unavailable.values()):
                self.drop_leftover_schemas()
        self.add_ratios()

    def drop_leftover_schemas(self) -> None:
        """The schemas of this run that a row killed at its timeout could not drop."""
        from .systems_postgres import drop_schemas, schemas_named

        try:
            left = schemas_named(self.args.pg_url, self.pg_prefix)
            if left:
                self.progress(f"      dropping {len(left)} schema(s) left by killed rows")
                drop_schemas(self.args.pg_url, left)
        except Exception as exc:  # noqa: BLE001 - the table is still worth printing
            self.progress(f"      could not drop this run's schemas ({self.pg_prefix}_*): {exc}")

    def template(self, system: System, depths: list[int]) -> dict[str, str]:
        """Stores of this system's family holding ``depth`` messages (0: a blank store every row copies; h's 1,000
        and --deep), each built once, in a process of its own: {str(depth): directory}, or {"error": ...}."""
        built = self.templates.setdefault(system.family, {})
        for depth in depths:
            if str(depth) in built:
                continue
            directory = os.path.join(self.tmp, f"template-{system.family}-{depth}")
            if depth:
                self.progress(f"      filling a {system.family} store with {depth:,} messages, to copy ...")
            started = time.monotonic()
            result = run_row(self.spec(system, "build", template=directory, depth=depth), self.timeout)
            if "error" in result:
                return {"error": f"making a store of {depth:,} messages: {result['error']}"}
            if depth:
                self.progress(f"      ... filled in {time.monotonic() - started:.0f} s")
            built[str(depth)] = directory
        return {depth: built[str(depth)] for depth in map(str, depths)}

    def drop_templates(self, family: str, remaining: list[tuple[str, System]]) -> None:
        """Delete a family's filled stores once no row left needs them (h's deep one can be large)."""
        needed = {"0"}
        for workload, system in remaining:
            if system.family == family:
                if workload.startswith("h-"):
                    needed.add(str(self.settings[workload[2:]]))
                elif workload in PREFILLED:
                    needed.add(str(self.settings["n"]))
        built = self.templates.get(family, {})
        for depth in [d for d in built if d not in needed]:
            shutil.rmtree(built.pop(depth), ignore_errors=True)

    def add_ratios(self) -> None:
        bases: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            base_key = "floor-100" if row["workload"] == "b" else "floor-1"
            if row["system"] == base_key and row["status"] == "ok":
                bases[row["workload"]] = row
        for row in self.rows:
            base = bases.get(row["workload"])
            row["ratio"] = None
            if row["status"] != "ok" or base is None:
                continue
            if row["workload"] in LATENCY_ONLY:
                if row.get("p50_ms") and base.get("p50_ms"):
                    row["ratio"] = base["p50_ms"] / row["p50_ms"]
            elif row.get("msgs_per_s") and base.get("msgs_per_s"):
                row["ratio"] = row["msgs_per_s"] / base["msgs_per_s"]


def describe(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row['note']}"
    parts = []
    if row.get("msgs_per_s"):
        parts.append(f"{row['msgs_per_s']:,.0f} msgs/s")
    if row.get("p50_ms") is not None:
        parts.append(f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms")
    parts.append(f"({row.get('secs', 0):.1f} s)")
    if row.get("note"):
        parts.append(row["note"])
    return "  ".join(parts)


# =============================================================================================================
# Output
# =============================================================================================================

def machine_line(machine: dict[str, Any]) -> str:
    load = machine.get("load_average")
    server = f", PostgreSQL {machine['postgresql']} at {machine['pg_server']}" if machine.get("postgresql") else ""
    return (f"{machine['cpus']} CPUs ({machine['cpu']}), {machine['platform']}, Python {machine['python']}, "
            f"SQLite {machine['sqlite']}{server}" + (f", load average {load[0]:.2f} at start" if load else ""))


def settings_line(settings: dict[str, Any]) -> str:
    runs = "1 run" if settings["runs"] == 1 else (f"median of up to {settings['runs']} runs (no new run once a row "
                                                   f"has taken {settings['row_seconds']:g} s)")
    text = (f"n={settings['n']:,} messages of {settings['size']} bytes, {runs}; "
            f"h: {settings['claims']:,} get+ack from {settings['shallow']:,} and {settings['deep']:,} queued; "
            f"e: {settings['paced_n']} paced messages; j: {settings['oneshots']} processes; "
            f"k: {settings['n_10k']:,} x 10 KB, {settings['n_1m']:,} x 1 MB; "
            f"timed loops stop after {settings['budget']:g} s")
    if settings["quick"] and settings["engine"] == "postgresql":
        text += f" (--quick: a {settings['deep']:,}-message deep queue, not 1,000,000)"
    elif settings["quick"]:
        text += (f" (--quick: a {settings['deep']:,}-message deep queue, not 1,000,000; without --systems, "
                 f"persist-queue's default and RabbitMQ with confirms are left out)")
    if settings["engine"] == "postgresql":
        from .systems_postgres import shown_url

        text += f"; stores: a fresh schema per run at {shown_url(settings['pg_url'])}"
    return text


def table(rows: list[dict[str, Any]], workloads: list[str], settings: dict[str, Any]) -> str:
    header = ["workload", "system", "msgs/s", "x floor", "p50 ms", "p99 ms", "peak RSS MB", "notes"]
    lines: list[list[str]] = []
    for workload in workloads:
        for row in rows:
            if row["workload"] != workload:
                continue
            if row["status"] == "n/a" and row["system"].startswith("floor"):
                continue  # a floor variant that does not apply: nothing to compare with
            label = workload_label(workload, settings)
            if row["status"] != "ok":
                lines.append([label, row["system_label"], row["status"], "", "", "", "", row["note"]])
                continue
            lines.append([
                label, row["system_label"],
                f"{row['msgs_per_s']:,.0f}" if row.get("msgs_per_s") else "-",
                f"{row['ratio']:.2f}" if row.get("ratio") is not None else "",
                f"{row['p50_ms']:.2f}" if row.get("p50_ms") is not None else "",
                f"{row['p99_ms']:.2f}" if row.get("p99_ms") is not None else "",
                f"{row['peak_rss_mb']:.0f}" if row.get("peak_rss_mb") else "",
                row.get("note", ""),
            ])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
              for i in range(len(header))]
    right = {2, 3, 4, 5, 6}

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = [fmt(header), "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                                       for i, w in enumerate(widths)) + "|"]
    out.extend(fmt(line) for line in lines)
    return "\n".join(out)


LEGEND = ("msgs/s: messages per second, median of the runs. x floor: that over the floor's msgs/s for the same work "
          "(the 100/txn floor for b; for the latency-only rows e-latency and j, the floor's p50 over the row's); "
          "below 1 is slower than raw {floor}. p50/p99: publish-to-receipt latency between processes (e), or the "
          "one-shot process's wall time (j). Peak RSS: the largest process of the row (the client side; RabbitMQ's "
          "server is not counted). l: the CPU an idle consumer costs, in its notes, as a share of one core over "
          "its wait (median of the runs). n/a: the system cannot do the workload; skipped: not installed or not "
          "reachable.")
PG_LEGEND = ("On PostgreSQL the server's own processes are not counted in peak RSS either; pgqueuer and "
             "procrastinate consume with their workers (asyncio), which call a job function and complete the job when "
             "it returns: that is their ack.")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.profile:
        from .profile import main as profile_main

        return profile_main(args.profile, args.systems, args.n, args.size)
    if args.celery_phases:
        from .celery_phases import main as phases_main

        return phases_main(args.celery_paced)
    if args.celery_latency:
        from .celery_throughput import latency_main

        return latency_main(args.celery_paced, runs=args.runs)
    if args.celery:
        from .celery_throughput import main as celery_main

        return celery_main(args.celery_n, paced=args.celery_paced, runs=args.runs)
    started = time.monotonic()
    machine = measure.machine()
    if args.engine == "postgresql":
        from .systems_postgres import server_address, server_check

        machine["postgresql"] = server_check(args.pg_url)[1] or "unreachable"
        machine["pg_server"] = server_address(args.pg_url)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    print(f"litemq benchmark: {command.strip()}")
    print(f"machine: {machine_line(machine)}")
    print(f"settings: {settings_line(bench.settings)}", flush=True)
    bench.run()
    runtime = time.monotonic() - started
    versions = ", ".join(f"{k} {v}" for k, v in sorted(bench.versions.items()))
    print()
    print(table(bench.rows, args.workloads, bench.settings))
    print()
    print(f"versions: {versions}")
    print(LEGEND.format(floor="psycopg" if args.engine == "postgresql" else "sqlite3"))
    if args.engine == "postgresql":
        print(PG_LEGEND)
    print(f"runtime: {runtime:.0f} s")
    churned = False
    if args.brk:
        from .allocator import verdict

        lines, churned = verdict(bench.rows)
        print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            settings = dict(bench.settings)
            if "pg_url" in settings:
                from .systems_postgres import shown_url

                settings["pg_url"] = shown_url(settings["pg_url"])
                settings["pg_schemas"] = bench.pg_prefix + "_*"
            json.dump({"command": command.strip(), "machine": machine, "settings": settings,
                       "versions": bench.versions, "runtime_s": round(runtime, 1), "rows": bench.rows}, out,
                      indent=1)
    return 1 if churned or any(row["status"] == "error" for row in bench.rows) else 0
