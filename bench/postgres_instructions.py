"""Instructions the PostgreSQL server spends on a publish, a claim of one message and an ack, litemq's and the
psycopg floor's: exact and repeatable where CPU time is not (a shared machine, a disk that flushes when it likes).

A scratch cluster (initdb in a temporary directory, its own socket, no TCP) gets litemq's schema by a store opening
it, then runs in single-user mode under cachegrind: for each row, ``--short`` and ``--long`` transactions as the
store sends them (a publish or a claim: BEGIN, litemq's write lock, the statement as the store prepares it, COMMIT;
an ack: its statement alone, as ``ack_last`` sends it; a get + ack: a claim of one message, then its ack; consume: a
consumer's ack and the claim that refills its room, in one transaction), each run
on a fresh copy of the cluster after the same setup (``--long`` messages stored first, ready or leased). The difference of the two runs,
divided by their difference in transactions, is the instructions of one (the server's start and end and the setup
cancel out). Single-user mode reads each EXECUTE as text, a few thousand instructions more than the wire protocol's
Bind: the same for every row, so the differences between rows hold.

    python -m bench.postgres_instructions [--bindir /usr/lib/postgresql/15/bin] [--short 100] [--long 400]
        [--only publish,get+ack,ack,consume]

Needs valgrind and PostgreSQL's initdb, pg_ctl and postgres; as root, runs them as the ``postgres`` account.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import floor_postgres
from .floor_postgres import SCHEMA as FLOOR_SCHEMA

BODY = "'\\x" + "78" * 100 + "'::bytea"
PUBLISH_TYPES = "text, text, text, bytea, text, float8"
PUBLISH_VALUES = f"'q', '', 'q', {BODY}, NULL, 1.0"
FIRST_ID = 1_000_001  # the messages the claims and acks take, stored with known ids


def stored(table: str, columns: str, values: str, count: int) -> str:
    """An INSERT of ``count`` messages numbered from FIRST_ID (``n`` in ``values``)."""
    return (f"INSERT INTO {table} (id, {columns}) SELECT n, {values} "
            f"FROM generate_series({FIRST_ID}, {FIRST_ID + count - 1}) AS n")


def _as_server_user(command: list[str], directory: Path) -> list[str]:
    if os.geteuid() != 0:
        return command
    shutil.chown(directory, "postgres")
    return ["su", "postgres", "-c", shlex.join(command)]


def scratch_cluster(bindir: Path, directory: Path) -> Path:
    """A new cluster holding litemq's schema (``litemq``, queue "q") and the floor's (``floor``)."""
    import psycopg

    import litemq

    data = directory / "data"
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                                   directory), check=True, capture_output=True)
    options = f"-c listen_addresses='' -c unix_socket_directories={directory} -p 5499 -c fsync=off"
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-o",
                                    options, "-w", "start"], directory), check=True, capture_output=True)
    try:
        conninfo = f"postgresql://postgres@/postgres?host={directory}&port=5499"
        connection = litemq.connect(conninfo + "&schema=litemq&listen=0")
        connection.declare_queue("q", durable=True)
        connection.close()
        with psycopg.connect(conninfo, autocommit=True) as db:
            db.execute("CREATE SCHEMA floor")
            db.execute("SET search_path TO floor")
            for statement in FLOOR_SCHEMA:
                db.execute(statement)
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-w", "stop"], directory),
                       check=True, capture_output=True)
    return data


def instructions(bindir: Path, data: Path, script: str) -> int:
    """The instructions of a single-user server that runs ``script`` (one command a line) on a copy of ``data``."""
    out = data.parent / f"cachegrind.{time.monotonic_ns()}"
    copy = data.parent / "run"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(_as_server_user(["cp", "-a", str(data), str(copy)], data.parent), check=True)
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
               str(bindir / "postgres"), "--single", "-D", str(copy), "-c", "fsync=off", "postgres"]
    run = subprocess.run(_as_server_user(command, data.parent), input=script, capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if " ERROR: " in line]  # (the server logs to stderr)
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if errors or not found:
        raise RuntimeError(f"the single-user server failed: {errors[:3] or run.stderr[-1000:]}")
    return int(found.group(1).replace(",", ""))


def per_transaction(bindir: Path, data: Path, setup: list[str], transaction: Callable[[int], list[str]], short: int,
                    long: int) -> float:
    """``transaction(k)``: the commands of the k-th transaction (from 0)."""
    def script(count: int) -> str:
        return "\n".join(setup + [line for k in range(count) for line in transaction(k)]) + "\n"

    return (instructions(bindir, data, script(long)) - instructions(bindir, data, script(short))) / (long - short)


def main() -> None:
    from litemq.store import postgres_sql as sql
    from litemq.store.postgres_keys import lock_key

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindir", type=Path, default=Path(subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip() or "/usr/lib/postgresql/15/bin"))
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--only", default="publish,get+ack,ack,consume", help="which of publish, get+ack, ack, consume")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="litemq-instructions-") as scratch:
        data = scratch_cluster(args.bindir, Path(scratch))
        lock = sql.LOCK_SHARED.format(key=lock_key("litemq", "write"))
        floor = ["SET search_path TO floor"]
        litemq_ = ["SET search_path TO litemq", f"PREPARE lock AS {lock}"]
        ready = stored("messages", "queue, body", f"'q', {BODY}", args.long)
        litemq_ready = stored("litemq_messages", "queue, exchange, routing_key, body, published_at",
                              f"'q', '', 'q', {BODY}, 1.0", args.long)
        leased = stored("messages", "queue, body, lease_until", f"'q', {BODY}, 1e12", args.long)
        litemq_leased = stored("litemq_messages", "queue, exchange, routing_key, body, published_at, lease_owner, "
                               "lease_token, lease_expires_at, delivery_count", f"'q', '', 'q', {BODY}, 1.0, 'o', n, "
                               "1e12, 1", args.long)
        claim_one = floor_postgres.CLAIM_ONE.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)
        rows = {
            "publish": {
                "floor (INSERT)": (floor + [f"PREPARE publish(text, bytea) AS {floor_postgres.INSERT % ('$1', '$2')}"],
                                   lambda k: ["BEGIN", f"EXECUTE publish('q', {BODY})", "COMMIT"]),
                "litemq (lock, PUBLISH_PLAIN)": (litemq_ + [f"PREPARE publish({PUBLISH_TYPES}) AS {sql.PUBLISH_PLAIN}"],
                                                 lambda k: ["BEGIN", "EXECUTE lock", f"EXECUTE publish({PUBLISH_VALUES})",
                                                            "COMMIT"]),
            },
            "get+ack": {  # the claim takes the lowest id that is ready: FIRST_ID + k
                "floor (UPDATE SKIP LOCKED; DELETE)": (
                    floor + [ready, f"PREPARE claim(float8, text, float8) AS {claim_one}",
                             f"PREPARE ack(bigint) AS {floor_postgres.DELETE % '$1'}"],
                    lambda k: ["BEGIN", "EXECUTE claim(1e12, 'q', 1.0)", "COMMIT",
                               "BEGIN", f"EXECUTE ack({FIRST_ID + k})", "COMMIT"]),
                "litemq (lock, CLAIM_WITH_PLAIN_QUEUE; ACK_ONE)": (
                    litemq_ + [litemq_ready, "PREPARE claim(text, bigint, float8, text, bigint, float8) AS "
                               f"{sql.CLAIM_WITH_PLAIN_QUEUE}", f"PREPARE ack(bigint, bigint) AS {sql.ACK_ONE}"],
                    lambda k: ["BEGIN", "EXECUTE lock", f"EXECUTE claim('o', {k + 1}, 1e12, 'q', 1, 1.0)", "COMMIT",
                               "BEGIN", f"EXECUTE ack({FIRST_ID + k}, {k + 1})", "COMMIT"]),
                "litemq (lock, CLAIM_AS_DEFAULT_CONSUMER; ACK_ONE)": (
                    litemq_ + [litemq_ready, "PREPARE claim(text, bigint, float8, text, bigint) AS "
                               f"{sql.CLAIM_AS_DEFAULT_CONSUMER}", f"PREPARE ack(bigint, bigint) AS {sql.ACK_ONE}"],
                    lambda k: ["BEGIN", "EXECUTE lock", f"EXECUTE claim('o', {k + 1}, 1e12, 'q', 1)", "COMMIT",
                               "BEGIN", f"EXECUTE ack({FIRST_ID + k}, {k + 1})", "COMMIT"]),
            },
            "consume": {  # a consumer's ack with its refill (prefetch 1): transaction k acks message k - 1
                "litemq general path (lock, ACK_ONE; RETURN_EXPIRED; SELECT_DEADLINES; CLAIM_AS_DEFAULT_CONSUMER)": (
                    litemq_ + [litemq_ready, f"PREPARE ack(bigint, bigint) AS {sql.ACK_ONE}",
                               f"PREPARE expired(text, float8) AS {sql.RETURN_EXPIRED}",
                               f"PREPARE deadlines AS {sql.SELECT_DEADLINES}",
                               "PREPARE claim(text, bigint, float8, text, bigint) AS "
                               f"{sql.CLAIM_AS_DEFAULT_CONSUMER}"],
                    lambda k: ["BEGIN", "EXECUTE lock", f"EXECUTE ack({FIRST_ID + k - 1}, {k})",
                               "EXECUTE expired('q', 1.0)", "EXECUTE deadlines",
                               f"EXECUTE claim('o', {k + 1}, 1e12, 'q', 1)", "COMMIT"]),
                "litemq (lock, ACK_ONE; CLAIM_UNLESS_DUE)": (
                    litemq_ + [litemq_ready, f"PREPARE ack(bigint, bigint) AS {sql.ACK_ONE}",
                               "PREPARE claim(text, bigint, float8, text, bigint, float8) AS "
                               f"{sql.CLAIM_UNLESS_DUE}"],
                    lambda k: ["BEGIN", "EXECUTE lock", f"EXECUTE ack({FIRST_ID + k - 1}, {k})",
                               f"EXECUTE claim('o', {k + 1}, 1e12, 'q', 1, 1.0)", "COMMIT"]),
                "litemq (lock, ACK_AND_CLAIM_UNLESS_DUE)": (
                    litemq_ + [litemq_ready, "PREPARE ack_claim(text, bigint, float8, text, bigint, float8, bigint, "
                               f"bigint) AS {sql.ACK_AND_CLAIM_UNLESS_DUE}"],
                    lambda k: ["BEGIN", "EXECUTE lock",
                               f"EXECUTE ack_claim('o', {k + 1}, 1e12, 'q', 1, 1.0, {FIRST_ID + k - 1}, {k})", "COMMIT"]),
            },
            "ack": {
                "floor (DELETE)": (floor + [leased, f"PREPARE ack(bigint) AS {floor_postgres.DELETE % '$1'}"],
                                   lambda k: ["BEGIN", f"EXECUTE ack({FIRST_ID + k})", "COMMIT"]),
                "litemq (ACK_ONE)": (litemq_ + [litemq_leased, f"PREPARE ack(bigint, bigint) AS {sql.ACK_ONE}"],
                                     lambda k: ["BEGIN", f"EXECUTE ack({FIRST_ID + k}, {FIRST_ID + k})", "COMMIT"]),
            },
        }
        print(f"server instructions per transaction ({args.long} - {args.short} transactions)")
        for kind in args.only.split(","):
            for name, (setup, transaction) in rows[kind].items():
                print(f"{kind:8} {name:60} "
                      f"{per_transaction(args.bindir, data, setup, transaction, args.short, args.long):10,.0f}")

if __name__ == "__main__":
    main()
