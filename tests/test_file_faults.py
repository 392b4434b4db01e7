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
from litemq.store.sqlite import IDENTITY_CHECK_SECONDS


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
