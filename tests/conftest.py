"""Fixtures: a broker of the test's own on each engine (a temp file, a PostgreSQL schema), connections to it, plain
SQL on it, and real extra processes. How engines are chosen and marked: see engines.py."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import sysconfig
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from freezegun import freeze_time

import alone
import litemq
from engines import BrokerSQL, make_broker, new_broker, postgresql_problem, selected_engines, services_required

REPO = Path(__file__).resolve().parent.parent
# The test sessions on PostgreSQL commit without waiting for the server's WAL flush: a test database needs no
# durability against a server crash, and the flush was a wait on every commit of the suite.
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c synchronous_commit=off".strip()


def pytest_configure(config: pytest.Config) -> None:
    alone.register(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test on the broker runs once per chosen engine; a sqlite_only one is not parametrised at all (no
    # postgresql variant to skip, and its id stays as it was).
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("sqlite_only") is None:
        metafunc.parametrize("engine", selected_engines(), indirect=True)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks given here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The tests run as other Unix users share one worker: the folder modes that let those users in are put back
    # when the session of the worker that changed them ends, which must not be while another runs such a test.
    for item in items:
        if "checkout_searchable_by_others" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("other_unix_users"))
    # What is sqlite_only runs only when sqlite is chosen; a parameter marked sqlite_only (pytest.param(...,
    # marks=...)) gets no postgresql variant either.
    sqlite_chosen = "sqlite" in selected_engines()

    def wanted(item: pytest.Item) -> bool:
        if item.get_closest_marker("sqlite_only") is None:
            return True
        callspec = getattr(item, "callspec", None)
        return sqlite_chosen and (callspec is None or callspec.params.get("engine", "sqlite") == "sqlite")

    dropped = [item for item in items if not wanted(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if wanted(item)]
    # A server that is down skips its variants with one reason per file in the report (a marked skip), rather than
    # one per test; under LITEMQ_REQUIRE_SERVICES=1 they are left to fail, each in its own fixture.
    on_server = [item for item in items if _engine_of_item(item) == "postgresql"]
    if on_server and not services_required() and postgresql_problem():
        for item in on_server:
            item.add_marker(pytest.mark.skip(reason=postgresql_problem()))


def _engine_of_item(item: pytest.Item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    backend = params.get("backend")
    return params.get("engine") or (backend[1] if isinstance(backend, tuple) else None) or ""


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The engine this variant of the test runs on: ``sqlite`` or ``postgresql``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db_path(engine: str, tmp_path: Path) -> Iterator[str]:
    """The test's own broker, what ``litemq.connect`` and the worker processes take: a temp file on sqlite (a path,
    which sqlite_only tests use as one), ``postgresql://...?schema=t_<hex>`` on postgresql, dropped afterwards."""
    with new_broker(engine, tmp_path) as url:
        opened_before = set(map(id, _open_connections()))
        yield url
        if engine == "postgresql":
            # A connection the test left open would go on working (renewing, sweeping) in a schema about to be
            # dropped, and log its failures into later tests (a left-open file connection finds its file still there).
            for connection in _open_connections():
                if id(connection) not in opened_before:
                    connection.close()


def _open_connections() -> list[litemq.Connection]:
    """This process's open litemq connections (litemq closes them at exit)."""
    return list(getattr(litemq.connection, "_open_connections", ()))


@pytest.fixture
def another_broker(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """``another_broker()`` gives the address of one more empty broker on the test's engine (dropped afterwards)."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(new_broker(engine, tmp_path_factory.mktemp("another")))


@pytest.fixture
def sql(db_path: str) -> Iterator[BrokerSQL]:
    """Plain SQL on the test's broker, committed at once, on a connection of its own: ``sql("SELECT ...", (p,))``
    gives the rows, ``sql.value(...)`` the one value (see engines.BrokerSQL)."""
    runner = BrokerSQL(db_path)
    yield runner
    runner.close()


def _renews_leases(request: pytest.FixtureRequest) -> bool:
    # Time rules are tested under freezegun with background renewal off, so only the frozen clock moves leases
    # (and no renewal statement runs between the ones a cost test counts).
    return request.node.get_closest_marker("no_lease_renewal") is None


@pytest.fixture
def conn(db_path: str, request: pytest.FixtureRequest) -> Iterator[litemq.Connection]:
    """A connection to the test's broker (``@pytest.mark.no_lease_renewal``: without background lease renewal)."""
    make_broker(db_path)
    connection = litemq.connect(db_path, renew_leases=_renews_leases(request))
    yield connection
    connection.close()


@pytest.fixture
def other(db_path: str, conn: litemq.Connection, request: pytest.FixtureRequest) -> Iterator[litemq.Connection]:
    """A second connection to the same file, as another process would have."""
    connection = litemq.connect(db_path, renew_leases=_renews_leases(request))
    yield connection
    connection.close()


@pytest.fixture
def dlx(conn: litemq.Connection) -> str:
    """A fanout dead-letter exchange "dlx" with the queue "dead" bound to it."""
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead")
    conn.bind_queue("dead", "dlx")
    return "dlx"


@pytest.fixture
def frozen() -> Iterator[Any]:
    """A frozen clock at 2026-01-01 00:00:00 UTC, moved with ``frozen.tick(seconds)``."""
    with freeze_time("2026-01-01 00:00:00") as clock:
        yield clock


class Processes:
    """Starts real processes (spawned, so nothing is inherited by fork), and kills any still running at the end."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.started: list[Any] = []

    def start(self, target: Callable[..., Any], *args: Any) -> Any:
        process = self.context.Process(target=target, args=args, daemon=True)
        process.start()
        self.started.append(process)
        return process

    def join_all(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        for process in self.started:
            process.join(max(0.0, deadline - time.monotonic()))
        alive = [p.pid for p in self.started if p.is_alive()]
        assert not alive, f"processes still running after {timeout}s: {alive}"

    def kill_all(self) -> None:
        for process in self.started:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGKILL)
                process.join(5)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.kill_all()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must import this checkout's litemq."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LITEMQ_URL", None)
    return env


@pytest.fixture
def program_broker(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The broker a program run in tmp_path with ``program_env`` opens by default: ./litemq.db there on sqlite, the
    test's own schema on postgresql."""
    return str(tmp_path / "litemq.db") if engine == "sqlite" else request.getfixturevalue("db_path")


@pytest.fixture
def program_env(engine: str, program_broker: str, subprocess_env: dict[str, str]) -> dict[str, str]:
    """``subprocess_env`` for programs that open their default broker (no URL given): on postgresql, $LITEMQ_URL
    names the test's schema, as a user moving to a server sets it."""
    return subprocess_env if engine == "sqlite" else dict(subprocess_env, LITEMQ_URL=program_broker)


PYTHON = sys.executable


@contextmanager
def counting_vm_steps(conn: litemq.Connection) -> Iterator[list[int]]:
    """Counts the SQLite VM instructions run on the connection inside the block (a deterministic cost)."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn._store._db.set_progress_handler(tick, 1)
    try:
        yield steps
    finally:
        conn._store._db.set_progress_handler(None, 1)


def vm_steps(conn: litemq.Connection, call: Callable[[], Any]) -> tuple[int, Any]:
    """How many SQLite VM instructions ``call`` runs on the connection, and what it returned."""
    with counting_vm_steps(conn) as steps:
        result = call()
    return steps[0], result


@pytest.fixture
def popen() -> Iterator[list[subprocess.Popen]]:
    """Subprocesses started by a test; any still running at the end are killed by pid."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate()


@pytest.fixture(scope="session")
def checkout_searchable_by_others() -> Iterator[None]:
    """For tests that run this checkout as other Unix users: the folders above it and above this environment's
    packages let others pass (a clone in a private mktemp folder would not), search bit only, where it is missing,
    put back at the end of the session."""
    changed: list[tuple[Path, int]] = []
    if os.geteuid() == 0:
        for path in (REPO / "litemq", Path(sysconfig.get_paths()["purelib"])):
            for folder in path.resolve().parents:
                mode = stat.S_IMODE(folder.stat().st_mode)
                if not mode & stat.S_IXOTH and folder not in [f for f, _ in changed]:
                    folder.chmod(mode | stat.S_IXOTH)
                    changed.append((folder, mode))
    try:
        yield
    finally:
        for folder, mode in reversed(changed):
            folder.chmod(mode)
