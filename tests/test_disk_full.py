"""A full disk must not freeze the broker: publishes are refused while free space is under litemq's floor, and
gets, acks, declares, new connections, lease renewals and close go on; nothing is lost."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import litemq
from litemq import session as session_module
from litemq.store import inspect
from litemq.store.sqlite_file import FREE_SPACE_FLOOR, IDENTITY_CHECK_SECONDS

DISK_BYTES = 64 * 1024 * 1024
MESSAGE = 256 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of the test's own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def publish_until_refused(conn: litemq.Connection, queue: str) -> tuple[int, litemq.StorageFull]:
    for published in range(DISK_BYTES // MESSAGE + 1):
        try:
            conn.publish("", queue, os.urandom(MESSAGE))
        except litemq.StorageFull as refused:
            return published, refused
    raise AssertionError("the disk never filled")


def free_bytes(directory: Path) -> int:
    fs = os.statvfs(directory)
    return fs.f_bavail * fs.f_frsize


def fill(directory: Path) -> Path:
    """Take every free byte of the file system with a file of the test's own."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):  # down to the last byte: a remainder would take a small commit
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_publishes_are_refused_at_the_floor_and_everything_else_goes_on(small_disk: Path) -> None:
    path = str(small_disk / "mq.db")
    conn = litemq.connect(path, lease_seconds=0.3)
    conn.declare_queue("jobs")
    published, refused = publish_until_refused(conn, "jobs")
    assert published > 10
    assert "publish refused" in str(refused) and path in str(refused) and "nothing was stored" in str(refused)
    floor = min(FREE_SPACE_FLOOR, DISK_BYTES // 8)
    assert free_bytes(small_disk) >= floor / 2  # the headroom is kept, give or take the WAL's last pages
    held = conn.get("jobs")  # a get, a declare, a new connection: all work
    assert held is not None
    conn.declare_queue("more")
    other = litemq.connect(path)
    acked = other.get("jobs")
    assert acked is not None
    other.ack(acked.delivery_tag)
    time.sleep(1.0)  # three lease lengths: the background renewal keeps the held delivery
    conn.ack(held.delivery_tag)
    conn.close()
    assert other.declare_queue("jobs", passive=True).message_count == published - 2
    with pytest.raises(litemq.StorageFull):
        other.publish("", "jobs", os.urandom(MESSAGE))  # still under the floor: the acks freed pages, not disk
    assert [line for line in other._store.execute("PRAGMA integrity_check").fetchall()] == [("ok",)]
    other.close()


def test_draining_the_queues_lets_publishes_in_again(small_disk: Path) -> None:
    conn = litemq.connect(str(small_disk / "mq.db"))
    conn.declare_queue("jobs")
    published, _ = publish_until_refused(conn, "jobs")
    for _ in range(published):
        conn.get("jobs", auto_ack=True)
    conn.publish("", "jobs", os.urandom(MESSAGE))  # the pages the acks freed in the file take it
    assert conn.declare_queue("jobs", passive=True).message_count == 1
    conn.close()


def test_close_lets_go_of_everything_when_the_disk_is_completely_full(small_disk: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = str(small_disk / "mq.db")
    conn = litemq.connect(path)
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"held when the disk filled")
    conn.declare_queue("mine", exclusive=True)
    held = conn.get("jobs")
    assert held is not None
    for _ in range(100):  # the WAL truncated to nothing, so the next commit needs new disk space; a checkpoint
        inspect.checkpoint(conn._store)  # does not wait for the background thread's reads: try again after one
        if os.path.getsize(path + "-wal") == 0:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the WAL could not be truncated")
    filler = fill(small_disk)  # something else took the last byte
    time.sleep(IDENTITY_CHECK_SECONDS * 1.5)  # free space is measured again by then
    with pytest.raises(litemq.StorageFull):
        conn.publish("", "jobs", b"no room")
    conn.close()  # does not raise, and lets go of the file
    assert not conn.is_open
    assert "without tidying up" in caplog.text  # its own cleanup could not be written
    filler.unlink()
    with litemq.connect(path) as again:
        returned = again.get("jobs", auto_ack=True)
        assert returned is not None and returned.body == b"held when the disk filled" and returned.redelivered
        with pytest.raises(litemq.NotFound):
            again.declare_queue("mine", passive=True)


def test_failing_background_work_backs_off_and_logs_once(db_path: str, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    attempts = []
    housekeep = session_module.Session.housekeep

    def failing_housekeep(self: session_module.Session) -> float:
        # Only this test's connection fails: another connection this process still has open (a fixture's of an
        # earlier test on the same pytest-xdist worker) goes on as usual and is neither counted nor logged.
        if self.path != db_path:
            return housekeep(self)
        attempts.append(time.monotonic())
        raise litemq.StorageFull(f"{self.path}: the disk or database is full")

    monkeypatch.setattr(session_module, "BACKOFF_SECONDS", (0.05, 0.4))
    monkeypatch.setattr(session_module.Session, "housekeep", failing_housekeep)
    caplog.set_level(logging.DEBUG, logger="litemq")
    conn = litemq.connect(db_path)
    time.sleep(1.6)
    monkeypatch.undo()
    conn.close()
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
    assert 3 <= len(attempts) <= 9  # 0.05, 0.1, 0.2, 0.4, 0.4 ...: not a retry every few milliseconds
    assert gaps[-1] >= 0.3
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
