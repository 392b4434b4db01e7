"""The file as a store: what litemq refuses to open (and leaves untouched), a full disk, the durability settings,
and cost pins that keep claims and counts O(1) whatever lies in the queue.

Costs are counted in SQLite VM instructions (a progress handler called at every one), never timed: the count is
deterministic, and a claim or count that walks rows grows with them by orders of magnitude.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import litemq
from conftest import vm_steps
from engines import broker_exists, sql_rows

# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def conn(db_path: str) -> Iterator[litemq.Connection]:
    """Background lease renewal off: its statements would run on the connection between the ones counted."""
    with litemq.connect(db_path, renew_leases=False) as connection:
        yield connection


def assert_same_cost(crowded: int, baseline: int, what: str) -> None:
    assert baseline > 0
    assert abs(crowded - baseline) <= 0.2 * baseline, (
        f"{what}: {crowded} VM steps with 100,000 rows in the way against {baseline} without; the cost grows "
        f"with the rows it should never visit")


def listing(directory: Path) -> dict[str, bytes]:
    """Every file under the directory with its bytes (directories by their listing)."""
    found: dict[str, bytes] = {}
    for name in sorted(os.listdir(directory)):
        entry = directory / name
        if entry.is_dir():
            found.update({f"{name}/{inner}": data for inner, data in listing(entry).items()})
            found[name + "/"] = b""
        else:
            found[name] = entry.read_bytes()
    return found


def insert_rows(conn: litemq.Connection, queue: str, count: int, *, lease_expires_at: float | None) -> None:
    """Add messages straight into the table (fast): leased until ``lease_expires_at``, or ready when None.

    The file's triggers count ready rows into the queue's counters."""
    leased = lease_expires_at is not None
    rows = ((queue, "", queue, b"m", 0.0, 1 if leased else 0, "someone/1" if leased else None,
             i + 1 if leased else None, lease_expires_at) for i in range(count))
    store = conn._store
    with store.write():
        store._db.executemany(
            "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, delivery_count, "
            "lease_owner, lease_token, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


FAR_FUTURE = 4_000_000_000.0  # year 2096
LONG_AGO = 1.0


# ---------------------------------------------------------------------------------------------------------------
# Files litemq cannot use: refused with their own error, and left as they were
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    pytest.param(b"name,amount\nalice,3\nbob,4\n", id="text"),
    pytest.param(b"SQLite", id="a prefix of SQLite's header"),
    pytest.param(b"SQLite format 3\x00" + b"\xff" * 5000, id="SQLite's header then garbage"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, id="binary"),
])
def test_a_file_that_is_not_sqlite_is_not_a_database_and_left_unchanged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(litemq.NotADatabase, match=re.escape(str(path))) as raised:
        litemq.connect(str(path))
    assert isinstance(raised.value, litemq.StorageError)
    assert "is not an SQLite database" in str(raised.value)
    assert listing(tmp_path) == {"notes.db": content}  # no -wal, no -shm, not a byte changed


def test_an_empty_existing_file_becomes_a_litemq_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with litemq.connect(str(path)) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"hello")
        assert conn.get("jobs", auto_ack=True).body == b"hello"
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


def test_an_applications_own_sqlite_file_is_shared_and_its_tables_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = sqlite3.connect(path)
    app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    app.execute("INSERT INTO orders (item) VALUES ('tea'), ('cake')")
    app.execute("CREATE TABLE alembic_version (version_num TEXT)")  # the application's own migrations
    app.execute("INSERT INTO alembic_version VALUES ('abc123')")
    app.commit()
    app.close()
    with litemq.connect(str(path)) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"x")
        assert conn.get("jobs", auto_ack=True).body == b"x"
    app = sqlite3.connect(path)
    assert app.execute("SELECT item FROM orders ORDER BY id").fetchall() == [("tea",), ("cake",)]
    assert app.execute("SELECT version_num FROM alembic_version").fetchall() == [("abc123",)]
    app.close()


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file or directory unwritable, even to root, and undo it afterwards.

    Permission bits bind ordinary users. Root ignores them (os.access says writable, and SQLite writes), so as
    root the immutable attribute (chattr +i) is set as well: it refuses writes to root too."""
    undo: list[Callable[[], Any]] = []

    def make(path: Path) -> None:
        original = stat.S_IMODE(path.stat().st_mode)
        path.chmod(0o555 if path.is_dir() else 0o444)
        undo.append(lambda: path.chmod(original))
        if os.access(path, os.W_OK):  # root: permission bits do not bind it
            try:
                done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, timeout=30)
            except FileNotFoundError:
                pytest.skip("running as root, which ignores permission bits, and chattr is not installed")
            if done.returncode != 0:
                pytest.skip(f"running as root, which ignores permission bits, and chattr +i failed here: "
                            f"{done.stderr.strip()}")
            undo.append(lambda: subprocess.run(["chattr", "-i", str(path)], check=True, timeout=30))
        if os.access(path, os.W_OK):
            pytest.skip(f"cannot make {path} read-only for this user")

    yield make
    for step in reversed(undo):
        step()


def test_a_read_only_file_is_read_only_database_and_left_unchanged(tmp_path: Path,
                                                                  make_read_only: Callable[[Path], None]) -> None:
    path = tmp_path / "mq.db"
    with litemq.connect(str(path)) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"kept")
    before = listing(tmp_path)
    make_read_only(path)
    with pytest.raises(litemq.ReadOnlyDatabase, match=re.escape(str(path))) as raised:
        litemq.connect(str(path))
    assert isinstance(raised.value, litemq.StorageError)
    assert "read-only" in str(raised.value)
    assert listing(tmp_path) == before


def test_a_file_in_a_read_only_directory_is_read_only_database(tmp_path: Path,
                                                              make_read_only: Callable[[Path], None]) -> None:
    # WAL mode creates -wal and -shm beside the file, so the directory must be writable too.
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "mq.db"
    with litemq.connect(str(path)) as conn:
        conn.declare_queue("jobs")
    before = listing(directory)
    make_read_only(directory)
    with pytest.raises(litemq.ReadOnlyDatabase, match=re.escape(str(directory))) as raised:
        litemq.connect(str(path))
    assert "not writable" in str(raised.value)
    assert listing(directory) == before


def test_a_new_file_in_a_read_only_directory_is_read_only_database_and_not_created(
        tmp_path: Path, make_read_only: Callable[[Path], None]) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    make_read_only(directory)
    with pytest.raises(litemq.ReadOnlyDatabase, match=re.escape(str(directory))):
        litemq.connect(str(directory / "mq.db"))
    assert os.listdir(directory) == []


def test_a_directory_that_does_not_exist_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(litemq.StorageError, match=re.escape(str(missing))) as raised:
        litemq.connect(str(missing / "mq.db"))
    assert "does not exist" in str(raised.value)
    assert os.listdir(tmp_path) == []  # nothing created on the way


def test_a_directory_in_place_of_the_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "mq.db").mkdir()
    with pytest.raises(litemq.StorageError, match="not a regular file"):
        litemq.connect(str(tmp_path / "mq.db"))
    assert os.listdir(tmp_path / "mq.db") == []


# ---------------------------------------------------------------------------------------------------------------
# A full disk (SQLITE_FULL, through SQLite's page limit): a publish is whole or absent
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.parametrize("repeats", [12, 40], ids=["3KB-in-row", "10KB-in-litemq_bodies"])
def test_a_full_database_is_storage_full_and_a_failed_publish_leaves_nothing_half_written(
        conn: litemq.Connection, repeats: int) -> None:
    conn.declare_exchange("all", "fanout")
    queues = ("a", "b", "c")
    for queue in queues:
        conn.declare_queue(queue)
        conn.bind_queue(queue, "all")
    pages = conn._store.execute("PRAGMA page_count").fetchone()[0]
    conn._store.execute(f"PRAGMA max_page_count = {pages + 40}")
    body = bytes(range(256)) * repeats  # three copies of it span pages, so a publish can fail between copies
    published = 0
    with pytest.raises(litemq.StorageFull) as raised:
        for _ in range(1000):
            assert conn.publish("all", "", body) == 3
            published += 1
    assert conn._store.path in str(raised.value) and "full" in str(raised.value)
    assert published > 0
    # Every queue holds exactly the messages whose publish returned, and its counter agrees.
    for queue in queues:
        assert conn.declare_queue(queue, passive=True).message_count == published
        rows = conn._store.execute("SELECT count(*) FROM litemq_messages WHERE queue = ?", (queue,)).fetchone()[0]
        assert rows == published
    assert not conn._store._db.in_transaction
    # Reads still work; once space is freed, so do writes.
    bodies = conn._store.execute("SELECT DISTINCT coalesce(m.body, b.body) FROM litemq_messages m "
                                 "LEFT JOIN litemq_bodies b ON b.id = m.id").fetchall()
    assert bodies == [(body,)]
    out_of_row = conn._store.execute("SELECT count(*) FROM litemq_bodies").fetchone()[0]
    assert out_of_row == (3 * published if len(body) > 3072 else 0)
    conn._store.execute("PRAGMA max_page_count = 1073741823")
    delivery = conn.get("a")
    assert delivery is not None and delivery.body == body and delivery.message_count == published - 1
    delivery.ack()
    assert conn.publish("all", "", b"more") == 3


# ---------------------------------------------------------------------------------------------------------------
# Durability settings (SQLite's pragmas: on PostgreSQL durability is the server's synchronous_commit)
# ---------------------------------------------------------------------------------------------------------------

def pragma(conn: litemq.Connection, name: str) -> Any:
    return conn._store.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.sqlite_only
def test_the_default_commit_is_synchronous_normal_in_wal_mode(conn: litemq.Connection) -> None:
    assert pragma(conn, "synchronous") == 1  # NORMAL
    assert pragma(conn, "journal_mode") == "wal"


@pytest.mark.sqlite_only
def test_synchronous_full_fsyncs_every_commit(db_path: str) -> None:
    with litemq.connect(db_path, synchronous="FULL") as conn:
        assert pragma(conn, "synchronous") == 2  # FULL
        assert pragma(conn, "journal_mode") == "wal"


@pytest.mark.sqlite_only
def test_the_setting_belongs_to_the_connection_not_the_file(db_path: str) -> None:
    with litemq.connect(db_path, synchronous="FULL") as full, litemq.connect(db_path) as normal:
        assert (pragma(full, "synchronous"), pragma(normal, "synchronous")) == (2, 1)


@pytest.mark.sqlite_only
def test_temporary_structures_stay_in_memory(conn: litemq.Connection) -> None:
    # A statement journal in a temporary file was freed and faulted in again at every claim and publish.
    assert pragma(conn, "temp_store") == 2  # MEMORY


@pytest.mark.parametrize("synchronous", ["bogus", "OFF", "EXTRA", 2, None])
def test_an_unknown_synchronous_setting_is_a_value_error_and_creates_no_file(db_path: str,
                                                                             synchronous: Any) -> None:
    with pytest.raises(ValueError, match="synchronous must be one of"):
        litemq.connect(db_path, synchronous=synchronous)
    assert not broker_exists(db_path)


# ---------------------------------------------------------------------------------------------------------------
# Cost pins: claims and counts do not grow with the rows they should never visit
# ---------------------------------------------------------------------------------------------------------------

def claim_cost(conn: litemq.Connection, queue: str) -> tuple[int, Any]:
    """The VM steps of a get (claim with lease); a get just before it warms the statement cache."""
    conn.get(queue)
    return vm_steps(conn, lambda: conn.get(queue))


@pytest.mark.sqlite_only
def test_a_claim_costs_the_same_with_100000_leased_messages_ahead_of_the_next_ready_one(
        conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    for _ in range(2):
        conn.publish("", "jobs", b"ready")
    baseline, delivery = claim_cost(conn, "jobs")
    assert delivery is not None
    insert_rows(conn, "jobs", 100_000, lease_expires_at=FAR_FUTURE)  # ids after the two above, before the next
    for _ in range(2):
        conn.publish("", "jobs", b"behind")
    crowded, delivery = claim_cost(conn, "jobs")
    assert delivery is not None and delivery.body == b"behind"
    assert_same_cost(crowded, baseline, "get (claim)")


@pytest.mark.sqlite_only
def test_an_auto_ack_claim_costs_the_same_with_100000_leased_messages_ahead(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    for _ in range(2):
        conn.publish("", "jobs", b"ready")
    conn.get("jobs", auto_ack=True)
    baseline, delivery = vm_steps(conn, lambda: conn.get("jobs", auto_ack=True))
    assert delivery is not None
    insert_rows(conn, "jobs", 100_000, lease_expires_at=FAR_FUTURE)
    for _ in range(2):
        conn.publish("", "jobs", b"behind")
    conn.get("jobs", auto_ack=True)
    crowded, delivery = vm_steps(conn, lambda: conn.get("jobs", auto_ack=True))
    assert delivery is not None and delivery.body == b"behind"
    assert_same_cost(crowded, baseline, "get (auto-ack claim)")


@pytest.mark.sqlite_only
def test_message_counts_cost_the_same_at_100000_queued_as_at_10(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    for i in range(12):
        conn.publish("", "jobs", b"%d" % i)
    conn.get("jobs")
    conn.get("jobs")  # 10 ready left; statements cached

    def costs() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        passive, info = vm_steps(conn, lambda: conn.declare_queue("jobs", passive=True))
        redeclare, again = vm_steps(conn, lambda: conn.declare_queue("jobs"))
        get, delivery = vm_steps(conn, lambda: conn.get("jobs"))
        return (passive, redeclare, get), (info.message_count, again.message_count, delivery.message_count)

    few, counts = costs()
    assert counts == (10, 10, 9)
    insert_rows(conn, "jobs", 100_000, lease_expires_at=None)
    many, counts = costs()
    assert counts == (100_009, 100_009, 100_008)
    for what, crowded, baseline in zip(("passive declare_queue", "declare_queue", "get"), many, few):
        assert_same_cost(crowded, baseline, f"{what} message_count")


@pytest.mark.sqlite_only
def test_returning_expired_leases_in_a_claim_costs_the_same_with_100000_unexpired_leases(
        conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.get("jobs")  # warm: statements cached

    # Nothing ready, nothing expired: the claim finds nothing.
    empty_baseline, nothing = vm_steps(conn, lambda: conn.get("jobs"))
    assert nothing is None
    # One expired lease: the claim returns it to the queue and takes it.
    insert_rows(conn, "jobs", 1, lease_expires_at=LONG_AGO)
    expired_baseline, delivery = vm_steps(conn, lambda: conn.get("jobs"))
    assert delivery is not None and delivery.redelivered
    conn.ack(delivery.delivery_tag)

    insert_rows(conn, "jobs", 100_000, lease_expires_at=FAR_FUTURE)
    empty_crowded, nothing = vm_steps(conn, lambda: conn.get("jobs"))
    assert nothing is None
    insert_rows(conn, "jobs", 1, lease_expires_at=LONG_AGO)
    expired_crowded, delivery = vm_steps(conn, lambda: conn.get("jobs"))
    assert delivery is not None and delivery.redelivered and delivery.message_count == 0

    assert_same_cost(empty_crowded, empty_baseline, "get with no lease expired")
    assert_same_cost(expired_crowded, expired_baseline, "get returning one expired lease")


@pytest.mark.sqlite_only
def test_a_connection_writing_without_pause_keeps_the_wal_small(db_path: str) -> None:
    # Three WAL pages a publish: without a checkpoint that keeps up, 6,000 publishes leave a WAL of some 75 MB.
    from litemq.store.sqlite_file import WAL_CHECKPOINT_PAGES

    with litemq.connect(db_path) as conn:
        conn.declare_queue("busy")
        largest = 0
        for n in range(6000):
            conn.publish("", "busy", b"x" * 100)
            if n % 500 == 0:
                largest = max(largest, os.path.getsize(db_path + "-wal"))
        for _ in range(3000):
            delivery = conn.get("busy")
            assert delivery is not None
            delivery.ack()
        largest = max(largest, os.path.getsize(db_path + "-wal"))
    assert largest < 3 * WAL_CHECKPOINT_PAGES * 4096, f"the WAL reached {largest / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------------------------
# Large bodies: in litemq_bodies, out of the message row that every claim rewrites
# ---------------------------------------------------------------------------------------------------------------

LARGE = bytes(range(256)) * 4096  # 1 MiB, every byte value


def stored_bodies(db_path: str) -> list[tuple[Any, ...]]:
    """(message id, body in the row, body in litemq_bodies) of every message, read with plain SQL."""
    return sql_rows(db_path, "SELECT m.id, m.body, b.body FROM litemq_messages m "
                             "LEFT JOIN litemq_bodies b ON b.id = m.id ORDER BY m.id")


@pytest.mark.sqlite_only
def test_a_body_over_the_row_limit_is_kept_in_litemq_bodies_and_a_small_one_in_its_row(
        conn: litemq.Connection, db_path: str) -> None:
    from litemq.store.sqlite_sql import OUT_OF_ROW_BYTES

    conn.declare_queue("files")
    conn.publish("", "files", b"s" * OUT_OF_ROW_BYTES)
    conn.publish("", "files", LARGE)
    conn.publish_many("", "files", [b"small", b"L" * (OUT_OF_ROW_BYTES + 1), b"tail"])

    (_, in_row, elsewhere), (_, big_row, big), (_, small, _), (_, over_row, over), (_, tail, _) = \
        stored_bodies(db_path)
    assert (in_row, elsewhere) == (b"s" * OUT_OF_ROW_BYTES, None)
    assert (big_row, big) == (None, LARGE)
    assert (over_row, over) == (None, b"L" * (OUT_OF_ROW_BYTES + 1))
    assert (small, tail) == (b"small", b"tail")
    assert conn.declare_queue("files", passive=True).message_count == 5
    with sqlite3.connect(db_path) as db:  # the views and the byte counter see every body where it is
        assert db.execute("SELECT bytes, ready_bytes FROM litemq_queue_stats").fetchone() == (
            (OUT_OF_ROW_BYTES + len(LARGE) + 5 + OUT_OF_ROW_BYTES + 1 + 4,) * 2)
        assert db.execute("SELECT body_bytes FROM litemq_message_view ORDER BY id").fetchall()[1] == (len(LARGE),)


def test_a_large_body_comes_back_whole_through_claim_requeue_redelivery_and_auto_ack(
        conn: litemq.Connection, db_path: str) -> None:
    conn.declare_queue("files")
    conn.publish("", "files", LARGE, litemq.Properties(content_type="application/octet-stream"))
    conn.publish("", "files", LARGE[::-1])

    first = conn.get("files")
    assert first is not None and first.body == LARGE and first.properties.content_type == "application/octet-stream"
    first.nack(requeue=True)
    again = conn.get("files")
    assert again is not None and again.body == LARGE and again.redelivered
    again.ack()
    assert [message_id for message_id, _, _ in stored_bodies(db_path)] != []
    taken = conn.get("files", auto_ack=True)
    assert taken is not None and taken.body == LARGE[::-1]
    assert stored_bodies(db_path) == []
    assert sql_rows(db_path, "SELECT count(*) FROM litemq_bodies") == [(0,)]


@pytest.mark.sqlite_only
def test_deleting_messages_any_way_deletes_their_large_bodies(conn: litemq.Connection, db_path: str) -> None:
    for queue in ("purged", "deleted", "by-hand"):
        conn.declare_queue(queue)
        conn.publish_many("", queue, [LARGE, b"small"])
    conn.purge_queue("purged")
    conn.delete_queue("deleted")
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (1,)  # by-hand's
        db.execute("DELETE FROM litemq_messages WHERE queue = 'by-hand'")
        db.commit()
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (0,)


@pytest.mark.sqlite_only
def test_claiming_a_large_message_does_not_write_its_body_again(db_path: str) -> None:
    # Measured as WAL growth: SQLite rewrites a row whole when its size changes, as a claim's lease does.
    with litemq.connect(db_path, renew_leases=False) as conn:
        conn.declare_queue("files")
        conn.publish("", "files", LARGE)
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert os.path.getsize(db_path + "-wal") == 0
        delivery = conn.get("files")
        assert delivery is not None and delivery.body == LARGE
        written = os.path.getsize(db_path + "-wal")
    assert written < 16 * 4096, f"the claim wrote {written:,} bytes of WAL for a {len(LARGE):,}-byte body"
