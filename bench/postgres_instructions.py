"""Instructions the PostgreSQL server spends on a publish, litemq's and the psycopg floor's: exact and repeatable where
CPU time is not (a shared machine, a disk that flushes when it likes).

A scratch cluster (initdb in a temporary directory, its own socket, no TCP) gets litemq's schema by a store opening
it, then runs in single-user mode under cachegrind: for each system, ``--short`` and ``--long`` transactions of
BEGIN, litemq's write lock (litemq only), the statement as the store prepares it, COMMIT. The difference of the two
runs, divided by their difference in transactions, is the instructions of one (the server's start and end cancel
out). Single-user mode reads each EXECUTE as text, a few thousand instructions more than the wire protocol's Bind:
the same for every row, so the differences between rows hold.

    python -m bench.postgres_instructions [--bindir /usr/lib/postgresql/15/bin] [--short 100] [--long 400]

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

from .floor_postgres import SCHEMA as FLOOR_SCHEMA

BODY = "'\\x" + "78" * 100 + "'::bytea"
PUBLISH_TYPES = "text, text, text, bytea, text, float8"
PUBLISH_VALUES = f"'q', '', 'q', {BODY}, NULL, 1.0"


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
    """The instructions of a single-user server that runs ``script`` (one command a line)."""
    out = data.parent / f"cachegrind.{time.monotonic_ns()}"
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
               str(bindir / "postgres"), "--single", "-D", str(data), "-c", "fsync=off", "postgres"]
    run = subprocess.run(_as_server_user(command, data.parent), input=script, capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if " ERROR: " in line]  # (the server logs to stderr)
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if errors or not found:
        raise RuntimeError(f"the single-user server failed: {errors[:3] or run.stderr[-1000:]}")
    return int(found.group(1).replace(",", ""))


def per_transaction(bindir: Path, data: Path, setup: list[str], transaction: list[str], short: int,
                    long: int) -> float:
    def script(count: int) -> str:
        return "\n".join(setup + transaction * count) + "\n"

    return (instructions(bindir, data, script(long)) - instructions(bindir, data, script(short))) / (long - short)


def main() -> None:
    from litemq.store import postgres_sql as sql
    from litemq.store.postgres_keys import lock_key

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindir", type=Path, default=Path(subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip() or "/usr/lib/postgresql/15/bin"))
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="litemq-instructions-") as scratch:
        data = scratch_cluster(args.bindir, Path(scratch))
        lock = sql.LOCK_SHARED.format(key=lock_key("litemq", "write"))
        rows = {
            "floor (INSERT)": (["SET search_path TO floor",
                                "PREPARE publish(text, bytea) AS INSERT INTO messages (queue, body) VALUES ($1, $2)"],
                               ["BEGIN", f"EXECUTE publish('q', {BODY})", "COMMIT"]),
            "litemq (lock, PUBLISH_PLAIN)": (["SET search_path TO litemq", f"PREPARE lock AS {lock}",
                                              f"PREPARE publish({PUBLISH_TYPES}) AS {sql.PUBLISH_PLAIN}"],
                                             ["BEGIN", "EXECUTE lock", f"EXECUTE publish({PUBLISH_VALUES})", "COMMIT"]),
        }
        print(f"server instructions per publish transaction ({args.long} - {args.short} transactions)")
        for name, (setup, transaction) in rows.items():
            print(f"{name:30} {per_transaction(args.bindir, data, setup, transaction, args.short, args.long):10,.0f}")


if __name__ == "__main__":
    main()
