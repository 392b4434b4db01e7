"""Permissions: a new database file, its -wal and -shm, its lock directory and lock files are private to their
owner (0600/0700) under the usual umask; ``share_with_group`` (or a group-writable file) shares them with the
file's group, and the lock directory and files follow the file's group and mode. Users of that group work together;
a user outside it cannot read a message, nor make a live connection look dead or a dead one alive.

The users are real: the ``unix_users`` fixture creates two members of a new group (A and B) and one outsider (C)
with useradd, once per session, and deletes them afterwards. It needs root (CI runs the suite as root) and is
skipped with the reason otherwise. Their processes run ``python -c`` with this checkout on PYTHONPATH, under the
usual umask (022), and report through files (liveness_workers.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

import litemq
from conftest import REPO
from litemq.store.lockfiles import sidecar_directory
from liveness_workers import python_command, wait_for_files, worker_errors

pytestmark = pytest.mark.sqlite_only  # file modes, the lock directory and local users: the file's own

BOUND = 5.0


def mode(path: "str | Path") -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------------------------------------------
# One user: private by default
# ---------------------------------------------------------------------------------------------------------------

def test_a_new_database_its_wal_and_its_lock_directory_are_private_to_their_owner(db_path: str) -> None:
    previous = os.umask(0o022)
    try:
        with litemq.connect(db_path) as conn:
            conn.declare_queue("jobs")
            conn.publish("", "jobs", b"secret")
            assert mode(db_path) == 0o600
            assert mode(db_path + "-wal") == 0o600
            assert mode(db_path + "-shm") == 0o600
            directory = Path(sidecar_directory(db_path))
            assert mode(directory) == 0o700
            assert [mode(lock) for lock in directory.iterdir()] == [0o600]
    finally:
        os.umask(previous)


def test_share_with_group_creates_the_database_and_its_lock_files_for_the_group(db_path: str) -> None:
    previous = os.umask(0o022)  # which would take the group's write bit
    try:
        with litemq.connect(db_path, share_with_group=True) as conn:
            conn.declare_queue("jobs")
            conn.publish("", "jobs", b"ours")
            assert mode(db_path) == mode(db_path + "-wal") == mode(db_path + "-shm") == 0o660
            directory = Path(sidecar_directory(db_path))
            assert mode(directory) == 0o2770
            assert [mode(lock) for lock in directory.iterdir()] == [0o640]  # others test it through read-only
    finally:
        os.umask(previous)


def test_an_existing_file_keeps_its_mode_and_the_lock_directory_follows_it(db_path: str) -> None:
    litemq.connect(db_path).close()
    shutil.rmtree(sidecar_directory(db_path))
    os.chmod(db_path, 0o660)  # the user shared it with the group
    with litemq.connect(db_path):
        assert mode(db_path) == 0o660
        assert mode(sidecar_directory(db_path)) == 0o2770


def test_share_with_group_on_an_existing_private_file_is_refused_with_how_to_share_it(db_path: str) -> None:
    litemq.connect(db_path).close()
    with pytest.raises(litemq.StorageError, match="is not group-writable") as raised:
        litemq.connect(db_path, share_with_group=True)
    assert db_path in str(raised.value) and "chmod g+rw" in str(raised.value)
    assert mode(db_path) == 0o600


# ---------------------------------------------------------------------------------------------------------------
# Several users
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class User:
    name: str
    uid: int
    gid: int


@dataclass
class Users:
    a: User
    """In the group."""
    b: User
    """In the group."""
    c: User
    """Outside it."""
    group: int
    base: Path
    """World-searchable; its ``out`` subdirectory takes everyone's reports."""
    python: str = sys.executable
    """An interpreter the users may run (this one may live in root's home)."""

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "LITEMQ_URL"}
        # This checkout, then this environment's packages (SQLAlchemy, for a file that needs migrating).
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"],
                                             sysconfig.get_paths()["platlib"]])
        env["HOME"] = str(self.base)
        return env

    def start(self, user: User, call: str) -> subprocess.Popen:
        """Run ``liveness_workers.<call>`` as the user, under umask 022."""
        return subprocess.Popen([self.python, *python_command(call)[1:]], user=user.uid, group=user.gid,
                                extra_groups=[], umask=0o022, env=self.env(), cwd=self.base,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, user: User, call: str) -> subprocess.CompletedProcess:
        process = self.start(user, call)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _python_for(users: Users) -> str:
    """This interpreter if the users may run it, else the system's one of the same version (or skip)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    failures = []
    for python in dict.fromkeys([sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")]):
        if python is None:
            continue
        users.python = python
        try:
            probe = users.run(users.a, "import litemq, sqlalchemy")
        except OSError as exc:
            failures.append(f"{python}: {exc}")
            continue
        if probe.returncode == 0:
            return python
        failures.append(f"{python}: {probe.stderr.strip()[-200:]}")
    pytest.skip(f"the users created cannot run this checkout's litemq: {'; '.join(failures)}")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def unix_users(checkout_searchable_by_others: None) -> Iterator[Users]:
    if os.geteuid() != 0:
        pytest.skip("creating Unix users needs root (CI runs the suite as root)")
    missing = [tool for tool in ("useradd", "userdel", "groupadd", "groupdel") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot create Unix users here: {', '.join(missing)} not installed")
    tag = os.urandom(3).hex()
    group = f"lmq-share-{tag}"
    users: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="litemq-users-"))
    try:
        _run("groupadd", group)
        for letter in "ab":
            _run("useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", f"lmq-{letter}-{tag}")
            users.append(f"lmq-{letter}-{tag}")
        _run("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", f"lmq-c-{tag}")  # and a group of its own
        users.append(f"lmq-c-{tag}")
        found = [pwd.getpwnam(name) for name in users]
        base.chmod(0o755)
        out = base / "out"
        (out / "errors").mkdir(parents=True)
        out.chmod(0o1777)
        (out / "errors").chmod(0o1777)
        result = Users(*(User(u.pw_name, u.pw_uid, u.pw_gid) for u in found), group=found[0].pw_gid, base=base)
        result.python = _python_for(result)
        yield result
    finally:
        for name in users:
            subprocess.run(["userdel", name], capture_output=True, timeout=60)
        subprocess.run(["groupdel", group], capture_output=True, timeout=60)
        subprocess.run(["groupdel", f"lmq-c-{tag}"], capture_output=True, timeout=60)  # if userdel left it
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def place(unix_users: Users, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory for this test's files: the group's (setgid, group-writable), which others may search and list."""
    directory = unix_users.base / request.node.name[:60]
    directory.mkdir()
    os.chown(directory, 0, unix_users.group)
    directory.chmod(0o2775)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
    for report in (unix_users.base / "out").glob("*"):
        if report.is_file():
            report.unlink()
        elif report.name == "errors":
            for error in report.iterdir():
                error.unlink()


def reports(users: Users) -> Path:
    return users.base / "out"


def assert_clean(process: "subprocess.Popen | subprocess.CompletedProcess", users: Users) -> None:
    assert worker_errors(reports(users)) == {}
    assert process.returncode == 0, process.stderr


def test_users_of_the_group_work_together_and_an_outsider_can_neither_read_nor_fake_liveness(
        unix_users: Users, place: Path) -> None:
    users, out = unix_users, reports(unix_users)
    db = str(place / "shared.db")
    holder = users.start(users.a, f"w.hold_shared({db!r}, 'work', {str(out)!r}, 'a')")
    try:
        wait_for_files([out / "held-a"], timeout=30)
        holder_id = (out / "held-a").read_text()
        # The file, its WAL and the lock directory and files are the group's, whatever A's umask (022).
        directory = Path(sidecar_directory(db))
        for path, expected in [(db, 0o660), (db + "-wal", 0o660), (db + "-shm", 0o660), (directory, 0o2770),
                               (directory / f"{holder_id}.lock", 0o640)]:
            found = os.stat(path)
            assert (stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid) == \
                   (expected, users.a.uid, users.group), path

        # B, in the group, takes the message A does not hold, publishes, and sees A alive (testing A's lock
        # through a read-only descriptor: A's lock file is not writable by the group).
        worker = users.run(users.b, f"w.work_with_shared_file({db!r}, 'work', {holder_id!r}, {str(out)!r}, 'b')")
        assert_clean(worker, users)
        assert (out / "done-b").read_text() == "a-1 True"
        # B's command line tool works on the shared file too, and lists A's connection as alive.
        cli = users.run(users.b, f"import sys; from litemq.cli import main; sys.exit(main(['--db', {db!r}, "
                                 f"'connections']))")
        assert cli.returncode == 0 and "Traceback" not in cli.stderr, cli.stderr
        (listed,) = [line.split() for line in cli.stdout.splitlines() if line.startswith(holder_id)]
        assert listed[-1] == "yes"  # alive

        # C, outside the group, can do nothing to the file or to the locks.
        attempt = users.run(users.c, f"w.interfere({db!r}, {holder_id!r}, {str(out)!r}, 'c')")
        assert_clean(attempt, users)
        tried = dict(line.split() for line in (out / "tried-c").read_text().splitlines())
        assert tried == {
            "read-database": "PermissionError", "read-wal": "PermissionError", "query": "OperationalError",
            "list-lock-directory": "PermissionError", "open-lock-file": "PermissionError",
            "remove-lock-directory": "PermissionError", "rename-lock-directory": "PermissionError",
            "connect": "ReadOnlyDatabase",
        }
        # A is still alive to everyone: its message is still its own.
        again = users.run(users.b, f"w.connect_and_report({db!r}, {str(out)!r}, 'b')")
        assert_clean(again, users)
        assert (out / "opened-b").read_text() == "opened"
        with litemq.connect(db) as conn:
            assert not conn._session.liveness.is_dead(holder_id)
            assert conn.get("work") is not None  # b-0, not a-0
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate()
    # Dead, A is found dead by B at once: its message comes back (long before its 600 s lease).
    started = time.monotonic()
    collector = users.run(users.b, f"w.collect({db!r}, 'work', 1, {str(out)!r}, {BOUND}, 'b')")
    assert_clean(collector, users)
    assert (out / "collected-b").read_text() == "a-0 1\n"
    assert time.monotonic() - started < 30


def test_a_lock_directory_made_by_a_user_outside_the_group_is_refused(unix_users: Users, place: Path) -> None:
    users, out = unix_users, reports(unix_users)
    place.chmod(0o1777)  # anyone may make files here, as in /tmp
    db = str(place / "mine.db")
    squatted = users.run(users.c, f"import os; os.mkdir({sidecar_directory(db)!r}); "
                                  f"os.chmod({sidecar_directory(db)!r}, 0o777)")
    assert squatted.returncode == 0, squatted.stderr
    opener = users.run(users.a, f"w.connect_and_report({db!r}, {str(out)!r}, 'a')")
    assert_clean(opener, users)
    outcome = (out / "opened-a").read_text()
    assert outcome.startswith("StorageError: the liveness directory " + sidecar_directory(db))
    assert f"belongs to uid {users.c.uid}" in outcome
    assert os.listdir(sidecar_directory(db)) == []


def test_connect_with_an_unwritable_lock_directory_raises_a_storage_error_naming_it(
        unix_users: Users, place: Path) -> None:
    users, out = unix_users, reports(unix_users)
    db = str(place / "mine.db")
    created = users.run(users.a, f"w.connect_and_report({db!r}, {str(out)!r}, 'first')")
    assert_clean(created, users)
    directory = sidecar_directory(db)
    shutil.rmtree(directory)
    os.mkdir(directory, 0o755)  # root's: trusted, but A cannot write in it
    opener = users.run(users.a, f"w.connect_and_report({db!r}, {str(out)!r}, 'a')")
    assert_clean(opener, users)
    assert (out / "opened-a").read_text() == (
        f"StorageError: the liveness directory {directory} is not writable by uid {users.a.uid}: litemq keeps a "
        f"lock file there for each open connection")
