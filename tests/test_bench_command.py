"""``python -m bench``, the comparison command, at a tiny size: it prints the machine and one table, writes JSON,
and skips what is not there (RabbitMQ at a port nobody listens on). Timings are never asserted, only that the
rows measured something and found no problem. Only litemq and the floor run: the peers are not needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.floor import TopicTrie
from services import POSTGRESQL_URL, _unavailable, require_postgresql

REPO = Path(__file__).resolve().parent.parent


def test_bench_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--n", "200", "--runs", "1", "--only", "a,c",
         "--systems", "floor,litemq,rabbitmq", "--rabbitmq", "127.0.0.1:1", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("machine: ") and "CPUs" in lines[1] and "Python" in lines[1] and "SQLite" in lines[1]
    table = [line for line in lines if line.startswith("| ")]
    assert [cell.strip() for cell in table[0].split("|")[1:-1]] == [
        "workload", "system", "msgs/s", "x floor", "p50 ms", "p99 ms", "peak RSS MB", "notes"]
    printed = {(cells[0], cells[1]) for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in table[1:])}
    for workload in ("a  publish, 1 per call", "c  get + ack, 1 at a time"):
        for system in ("sqlite3 floor, 1/txn", "litemq", "litemq, FULL", "litemq.pika", "RabbitMQ"):
            assert (workload, system) in printed

    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] and report["machine"]["sqlite"] and report["settings"]["n"] == 200
    rows = {(row["workload"], row["system"]): row for row in report["rows"]}
    assert {w for w, _ in rows} == {"a", "c"}
    for workload in ("a", "c"):
        for system in ("floor-1", "litemq-native", "litemq-full", "litemq-pika"):
            row = rows[workload, system]
            assert row["status"] == "ok", row
            assert row["n"] == 200 and row["msgs_per_s"] > 0 and row["peak_rss_mb"] > 0 and not row["problems"]
        assert rows[workload, "floor-1"]["ratio"] == 1.0
        assert rows[workload, "litemq-native"]["ratio"] > 0
        assert rows[workload, "floor-100"]["status"] == "n/a"  # 100 per transaction is row b
        assert rows[workload, "rabbitmq-plain"]["status"] == "skipped"
    assert rows["a", "rabbitmq-confirms"]["status"] == "skipped"
    assert rows["c", "rabbitmq-confirms"]["status"] == "n/a"  # consuming is the same with or without confirms
    assert report["versions"]["litemq"]


def test_the_floor_routes_topics_as_amqp_does() -> None:
    trie = TopicTrie([("a", "stock.*.nyse"), ("b", "stock.#"), ("c", "#"), ("d", "*.x.#.y"), ("e", "stock.s1.*")])
    assert trie.match("stock.s1.nyse") == ["a", "b", "c", "e"]
    assert trie.match("stock") == ["b", "c"]
    assert trie.match("a.x.y") == ["c", "d"]
    assert trie.match("a.x.b.c.y") == ["c", "d"]
    assert trie.match("stock.s1") == ["b", "c"]
    assert trie.match("") == ["c"]


def test_bench_on_postgresql_measures_the_psycopg_floor_and_drops_its_schemas(tmp_path: Path) -> None:
    """``--engine postgresql --quick`` on the local server: the floor's rows measure, litemq's rows measure or
    fail as a row (never the command), and every schema the run made is gone after it."""
    require_postgresql()
    import psycopg

    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--engine", "postgresql", "--quick", "--only", "a,b,c,e",
         "--systems", "floor,litemq-native", "--pg-url", POSTGRESQL_URL, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.stdout.splitlines()[1].startswith("machine: ") and "PostgreSQL" in done.stdout.splitlines()[1]
    report = json.loads(out.read_text())
    assert report["settings"]["engine"] == "postgresql" and report["machine"]["postgresql"]
    rows = {(row["workload"], row["system"]): row for row in report["rows"]}
    for workload, system in [("a", "floor-1"), ("b", "floor-100"), ("c", "floor-1"), ("e", "floor-1"),
                             ("e", "floor-100"), ("e-lat", "floor-1")]:
        row = rows[workload, system]
        assert row["status"] == "ok", row
        assert row["n"] > 0 and not row["problems"] and row["ratio"] > 0
        assert row["msgs_per_s"] or row["p50_ms"]
        assert row["ratio"] == 1.0 or (workload, system) == ("e", "floor-100")  # the 1/txn floor is e's base
    assert rows["a", "floor-100"]["status"] == "n/a"
    litemq_rows = [row for (_, system), row in rows.items() if system == "litemq-native"]
    assert litemq_rows and all(row["status"] == "ok" and (row["msgs_per_s"] or row["p50_ms"]) for row in litemq_rows)
    assert done.returncode == 0, done.stderr
    assert "psycopg" in report["versions"]
    prefix = report["settings"]["pg_schemas"].rstrip("*")
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as conn:
        assert conn.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                            (prefix,)).fetchall() == []


def test_the_idle_row_measures_what_a_waiting_consumer_costs_with_its_server_sessions(tmp_path: Path,
                                                                                      engine: str) -> None:
    out = tmp_path / "bench.json"
    server = ["--engine", "postgresql", "--pg-url", POSTGRESQL_URL] if engine == "postgresql" else []
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "l", "--systems", "floor,litemq-native,litemq-pika",
         *server, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["system"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["floor-100"]["status"] == "n/a"  # batching does not change a wait
    for system in ("floor-1", "litemq-native", "litemq-pika"):
        row = rows[system]
        assert row["status"] == "ok" and not row["problems"], row
        assert row["idle_cpu_pct"] >= 0 and row["runs"][0]["seconds"] >= 1.0
        assert re.match(r"\d+\.\d\d % of a core", row["note"]), row["note"]
    if engine == "postgresql":  # its own session and the listening one are found and counted
        assert rows["litemq-native"]["runs"][0]["server_sessions"] == 2
        assert "its 2 server sessions" in rows["litemq-native"]["note"]
    else:
        assert rows["litemq-native"]["runs"][0]["server_sessions"] == 0


def test_crash_detection_bench_measures_each_case_and_leaves_no_store_behind(engine: str) -> None:
    server = ["--url", POSTGRESQL_URL] if engine == "postgresql" else []
    done = subprocess.run([sys.executable, "bench/crash_detection.py", "--trials", "1", "--no-rabbitmq", *server],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
    assert ("PostgreSQL at 127.0.0.1:5432" if engine == "postgresql" else "on SQLite") in done.stdout
    rows = {line[:47].strip(): line[47:].split() for line in done.stdout.splitlines() if line.startswith("(")}
    for case in ("(a) redelivery to a waiting consumer", "(b) exclusive queue gone, polled",
                 "(c) exclusive queue gone, nobody polling"):
        broker, p50, p90, top = rows[case][:4]
        assert broker == "litemq" and 0 < float(p50) <= float(top) < 30_000, rows[case]
    if engine == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRESQL_URL, autocommit=True) as conn:
            assert conn.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'litemq_crash_')"
                                ).fetchall() == []


def test_write_lock_bench_drains_the_queue_with_each_number_of_consumers_and_counts_their_waits() -> None:
    done = subprocess.run([sys.executable, "bench/write_lock.py", "--consumers", "1,2", "--n", "60", "--runs", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "consumer(s)" in line]
    assert [line.split()[0] for line in lines] == ["1", "2"], done.stdout
    for line, consumers in zip(lines, (1, 2)):
        found = re.search(r"shares \[([\d, ]+)\]", line)
        assert found, line
        shares = [int(n) for n in found.group(1).split(",")]
        assert len(shares) == consumers and sum(shares) == 60, line
        assert re.search(r"CPU +\d+ us/msg \( *\d+ us inside each write transaction\)", line), line


def test_asyncio_targets_measure_the_idle_consumers_and_each_pairing_uvloops_included() -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed (the test extra installs it)")
    done = subprocess.run([sys.executable, "bench/asyncio_targets.py", "--consumers", "3", "--idle-seconds", "0.1",
                           "--no-realtime", "--rounds", "1", "--messages", "30", "--paced", "5", "--uvloop"],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"3 idle async consumers on 3 queues.*: [\d.]+ % of a core", done.stdout), done.stdout
    for system in ("litemq blocking", "litemq.aio", "litemq.aio, uvloop"):
        assert re.search(rf"^   {re.escape(system)} +[\d,]+ +[\d.]+ +[\d.]+ ", done.stdout, re.M), done.stdout


def test_celery_latency_rows_take_their_paced_tasks_from_paced_n() -> None:
    from bench.command import parse_args

    assert parse_args(["--celery"]).celery_paced == 40
    assert parse_args(["--celery", "--quick"]).celery_paced == 10
    assert parse_args(["--celery", "--paced-n", "200"]).celery_paced == 200
    assert parse_args(["--celery-latency"]).celery_paced == 200
    assert parse_args(["--celery-latency", "--paced-n", "50"]).celery_paced == 50
    assert parse_args(["--celery-phases"]).celery_paced == 200


def test_celery_phases_split_each_task_by_the_first_time_each_mark_came(tmp_path: Path) -> None:
    from bench.celery_phases import steps

    (tmp_path / "marks-1").write_text("10.0001 publish >\n10.0003 publish <\n10.0004 publish >\n20.0 late >\n")
    (tmp_path / "marks-2").write_text("10.0006 claim >\n")
    found = steps(str(tmp_path), [(10.0, 10.001, 10.002)], 1)
    assert {step: [round(d) for d, _ in durations] for step, durations in found.items()} == {
        "send_task -> publish >": [100], "publish > -> publish <": [200], "publish < -> claim >": [300],
        "claim > -> task start": [400]}


def test_profile_prints_the_time_split_statements_and_wal_pages_of_one_workload() -> None:
    """``--profile c``: per get+ack, the CPU split (user and kernel, cProfile's SQLite share, perf's libraries where
    perf runs), the statements and commits run and the WAL pages written. The figures are counted, never timed."""
    done = subprocess.run([sys.executable, "-m", "bench", "--profile", "c", "--n", "300"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("profile: c (get + ack, 1 at a time) on litemq: 300 operations"), out
    assert re.search(r"CPU +[\d.]+ us = user [\d.]+ us \(interpreter and SQLite\) \+ system [\d.]+ us \(kernel\)", out)
    share = re.search(r"SQLite's C calls (\d+) %, Python (\d+) %", out)
    assert share and int(share.group(1)) + int(share.group(2)) in (99, 100, 101), out
    assert re.search(r"perf, CPU samples by library: SQLite [\d.]+ %|perf: not measured: \S", out), out
    counts = re.search(r"statements ([\d.]+), trigger programs ([\d.]+), commits ([\d.]+)", out)
    assert counts, out
    # A get and an ack: at least a claim and a delete, in one or two transactions (an ack may be settled with the
    # next claim).
    assert float(counts.group(1)) >= 2 and 1.0 <= float(counts.group(3)) <= 2.0, out
    pages = re.search(r"WAL pages written ([\d.]+), per commit ([\d.]+)", out)
    assert pages and float(pages.group(1)) >= 1 and float(pages.group(2)) >= 1, out
    assert "  BEGIN IMMEDIATE" in out and "COMMIT" in out
    assert re.search(r"top \d+ functions by own time", out)


def test_profile_counts_a_write_outside_a_transaction_as_its_commit() -> None:
    # litemq's publish by queue name is one INSERT in autocommit mode: a commit per publish, with no COMMIT statement.
    done = subprocess.run([sys.executable, "-m", "bench", "--profile", "a", "--n", "200"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"commits 1\.00\n  WAL pages written [\d.]+, per commit [1-9]", done.stdout), done.stdout


def test_profile_measures_the_floor_too() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--profile", "a", "--systems", "floor-1", "--n", "200"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on sqlite3 floor, 1/txn: 200 operations" in done.stdout
    assert re.search(r"statements 1\.00, trigger programs 0\.00", done.stdout), done.stdout  # one INSERT
    assert re.search(r"WAL pages written [1-9]", done.stdout), done.stdout


def test_profile_refuses_a_workload_it_cannot_profile() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--profile", "e"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--profile takes one of a, b, c, not 'e'" in done.stderr


def test_no_row_of_the_bench_churns_the_allocator() -> None:
    """``--brk`` runs the table's get+ack and publish rows under strace: a row making more than a tenth of a brk
    call per message churns (about 0.3-0.7 when SQLite's temp store made glibc give memory back and take it again
    at every claim; 0.01 otherwise). The rows' own processes are measured, since churn depends on a process's
    heap."""
    from bench.allocator import MAX_BRK_PER_MESSAGE, strace_missing

    missing = strace_missing()
    if missing:
        # .ci/run installs strace: under LITEMQ_REQUIRE_SERVICES=1 its absence fails, so churn cannot come back
        # behind a skip.
        _unavailable(f"counting brk calls needs strace: {missing}")
    done = subprocess.run([sys.executable, "-m", "bench", "--brk", "--only", "a,c", "--systems", "litemq-native",
                           "--n", "2000"], cwd=REPO, capture_output=True, text=True, timeout=600)
    figures = {workload: float(per_message) for workload, per_message in
               re.findall(r"^  ([ac]) +litemq-native +([\d.]+) ", done.stdout, re.MULTILINE)}
    assert set(figures) == {"a", "c"}, done.stdout + done.stderr
    assert all(per_message <= MAX_BRK_PER_MESSAGE for per_message in figures.values()), done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
