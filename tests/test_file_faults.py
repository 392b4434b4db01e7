"""The file under faults: deleted or replaced under open connections, or given a WAL that belongs to another
database. Each ends in a clear StorageError naming the file and what happened, never in a broker that reports
messages stored into a file nobody else can see."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Callable

import pytest

import litemq
from litemq.store import inspect
from litemq.store.sqlite_file import IDENTITY_CHECK_SECONDS

pytestmark = pytest.mark.sqlite_only  # a file deleted, replaced or given another WAL


def remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.remove(path + suffix)


def after_the_next_identity_check() -> None:
    time.sleep(IDENTITY_CHECK_SECONDS * 1.5)


def test_publish_into_a_deleted_file_raises_instead_of_storing_into_the_unlinked_file(db_path: str) -> None:
    conn = litemq.connect(db_path)
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"before")
    remove_database(db_path)
    after_the_next_identity_check()
    with pytest.raises(litemq.StorageError, match=re.escape(f"{db_path} was deleted while this connection to {db_path} was open")):
        conn.publish("", "jobs", b"after")
    with pytest.raises(litemq.StorageError, match="deleted"):
        conn.get("jobs")  # and from then on, reads too
    with pytest.raises(litemq.StorageError, match="deleted"):
        conn.declare_queue("other")
    conn.close()  # lets go without writing
    assert not conn.is_open
    assert not os.path.exists(db_path)  # nothing recreated the file behind the user's back


def test_a_new_connection_opens_the_new_file_while_the_old_one_refuses(db_path: str) -> None:
    old = litemq.connect(db_path)
    old.declare_queue("jobs")
    remove_database(db_path)
    new = litemq.connect(db_path)
    new.declare_queue("jobs")
    new.publish("", "jobs", b"in the new file")
    after_the_next_identity_check()
    with pytest.raises(litemq.StorageError, match="was replaced by another file"):
        old.publish("", "jobs", b"would be lost")
    assert new.get("jobs", auto_ack=True).body == b"in the new file"
    assert new.get("jobs") is None
    old.close()
    new.close()


def rename_away(path: str) -> str:
    for suffix in ("", "-wal", "-shm"):
        os.rename(path + suffix, path + ".moved" + suffix)
    return f"{path} was deleted"


def remove_wal(path: str) -> str:
    os.remove(path + "-wal")
    return f"{path}-wal was deleted"


@pytest.mark.parametrize("fault", [rename_away, remove_wal])
def test_a_file_renamed_away_or_a_deleted_wal_is_refused(db_path: str, fault: Callable[[str], str]) -> None:
    conn = litemq.connect(db_path)
    conn.declare_queue("jobs")
    what = fault(db_path)
    after_the_next_identity_check()
    with pytest.raises(litemq.StorageError, match=re.escape(what)):
        conn.publish("", "jobs", b"x")
    conn.close()


def test_an_untouched_file_keeps_working_across_many_identity_checks(db_path: str) -> None:
    conn = litemq.connect(db_path)
    conn.declare_queue("jobs")
    deadline = time.monotonic() + IDENTITY_CHECK_SECONDS * 5
    published = 0
    while time.monotonic() < deadline:
        conn.publish("", "jobs", b"x")
        published += 1
    assert conn.declare_queue("jobs", passive=True).message_count == published
    conn.close()


# ---------------------------------------------------------------------------------------------------------------
# A write-ahead log that belongs to another database
# ---------------------------------------------------------------------------------------------------------------

def litemq_wal(directory: Path) -> Path:
    """The -wal of a litemq file holding its latest commits (page 1 among them: the file grew since its last
    checkpoint), as a copy or a restore would carry it off."""
    conn = litemq.connect(str(directory / "other.db"), renew_leases=False)
    conn.declare_queue("q")
    conn._store.execute("PRAGMA wal_autocheckpoint=0")
    inspect.checkpoint(conn._store)
    conn._session._stop.set()  # no background checkpoint either
    for i in range(50):
        conn.publish("", "q", bytes([i]) * 2000)
    copy = directory / "stray-wal"
    shutil.copy(str(directory / "other.db-wal"), str(copy))
    conn.close()
    return copy


def application_file(path: Path) -> None:
    with closing(sqlite3.connect(str(path))) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for t in range(20):
            db.execute(f"CREATE TABLE t{t} (a, b)")
            db.executemany(f"INSERT INTO t{t} VALUES (?, ?)", [(t, bytes([t]) * 300)] * 30)
        db.commit()


def rows_per_table(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(str(path))) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: db.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in names}


def test_a_stray_wal_from_another_database_is_named_and_the_file_is_left_as_it_was(tmp_path: Path) -> None:
    app = tmp_path / "app.db"
    application_file(app)
    before = rows_per_table(app)
    shutil.copy(str(litemq_wal(tmp_path)), str(app) + "-wal")
    with pytest.raises(litemq.StorageError) as refused:
        litemq.connect(str(app))
    message = str(refused.value)
    assert f"SQLite applied the write-ahead log {app}-wal" in message
    assert "belong to another database" in message and "Nothing was changed" in message
    assert "already exists" not in message
    for suffix in ("-wal", "-shm"):  # what the message says to do
        os.rename(str(app) + suffix, str(app) + suffix + ".aside")
    assert rows_per_table(app) == before  # no checkpoint copied the stray log into the file


def test_a_litemq_wal_beside_a_file_not_yet_created_is_not_adopted(tmp_path: Path) -> None:
    # SQLite does not apply a log to a database that does not exist yet: the new file starts empty and whole.
    fresh = tmp_path / "fresh.db"
    shutil.copy(str(litemq_wal(tmp_path)), str(fresh) + "-wal")
    with litemq.connect(str(fresh)) as conn:
        with pytest.raises(litemq.QueueNotFound):
            conn.declare_queue("q", passive=True)
        conn.declare_queue("q")
        conn.publish("", "q", b"new")
    assert rows_per_table(fresh)["litemq_messages"] == 1


def test_litemq_tables_without_a_schema_revision_are_not_migrated_over(db_path: str) -> None:
    with litemq.connect(db_path) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"kept")
    with closing(sqlite3.connect(db_path)) as db:
        db.execute("DELETE FROM litemq_alembic_version")
        db.commit()
    with pytest.raises(litemq.StorageError, match="has litemq's tables but no schema revision.*nothing was changed"):
        litemq.connect(db_path)
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT count(*) FROM litemq_messages").fetchone() == (1,)
