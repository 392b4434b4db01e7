"""Celery on litemq: real ``celery worker`` processes (prefork and solo pools) on a temp file run tasks, answer
remote control, hold countdown tasks without running them twice, and get a killed worker's task back.

SQLite but for one test: a worker takes about a second to start, and these tests are about Celery's use of the
transport (which test_kombu.py checks on both engines), not about the engines; PostgreSQL would double their time.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("celery")

from celery import Celery, chord, group  # noqa: E402

from kombu import Consumer, pools  # noqa: E402
from kombu.common import Broadcast  # noqa: E402

import litemq  # noqa: E402
import litemq.kombu  # noqa: E402,F401
from conftest import REPO  # noqa: E402
from test_kombu import kombu_url  # noqa: E402

CELERY = str(Path(sys.executable).with_name("celery"))
START_SECONDS = 30.0


class Workers:
    """``celery worker`` processes of tests/celery_app.py on one broker, and a client app to send them tasks.
    Each worker leads a process group of its own (a prefork pool's children with it), stopped by its id."""

    def __init__(self, directory: Path, broker: str, backend: str = "rpc://", lease_seconds: float = 60) -> None:
        self.directory = directory
        self.record_path = directory / "runs.jsonl"
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]),
                        CELERY_TEST_BROKER=broker, CELERY_TEST_BACKEND=backend,
                        CELERY_TEST_RECORD=str(self.record_path), CELERY_TEST_LEASE_SECONDS=str(lease_seconds))
        self.env.pop("LITEMQ_URL", None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.client = Celery("celery_app", broker=broker, backend=backend)
        self.client.conf.broker_transport_options = {"lease_seconds": lease_seconds}
        self.client.conf.task_queues = [Broadcast("broadcast")]  # so a task sent there goes to its fanout exchange

    def start(self, name: str, pool: str = "solo", concurrency: int = 1, queues: str = "celery",
              *options: str) -> None:
        log = open(self.directory / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(
            [CELERY, "-A", "celery_app", "worker", "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
             "-Q", queues, "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", *options],
            cwd=self.directory, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def node(self, name: str) -> str:
        return f"{name}@{os.uname().nodename}"

    def wait_ready(self, *names: str) -> None:
        """Until every named worker answers a ping (a bounded wait)."""
        wanted = {self.node(name) for name in names}
        deadline = time.monotonic() + START_SECONDS
        answered: set[str] = set()
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                assert process.poll() is None, f"worker {name} exited:\n{self.log(name)}"
            answered |= {node for reply in self.client.control.ping(timeout=0.5) for node in reply}
            if wanted <= answered:
                return
        raise AssertionError(f"workers {sorted(wanted - answered)} did not answer within {START_SECONDS} s")

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def records(self, **match: Any) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        lines = [json.loads(line) for line in self.record_path.read_text().splitlines()]
        return [line for line in lines if all(line.get(key) == value for key, value in match.items())]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"not within {timeout} s; runs: {self.records()}")

    def kill(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and its pool's children: a group led by its pid
        process.wait(10)

    def close(self) -> None:
        for name in self.processes:
            self.kill(name)
        # The client's connections are in kombu's pools, which Celery's close() leaves open (litemq's, each with
        # its thread, on a file about to be removed).
        pools.reset()
        self.client.close()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """A solo worker and a prefork worker (two children) sharing one file; leases of one second, so a task held
    longer than that is one whose lease the worker renewed."""
    directory = tmp_path_factory.mktemp("celery")
    crew = Workers(directory, f"litemq:///{directory}/celery.db", lease_seconds=1.0)
    crew.start("solo", "solo", 1, "celery,solo,broadcast", "--task-events")
    crew.start("prefork", "prefork", 2, "celery,prefork,broadcast", "--task-events")
    try:
        crew.wait_ready("solo", "prefork")
        yield crew
    finally:
        crew.close()


def test_tasks_run_on_the_solo_and_the_prefork_pool_and_return_results_over_rpc(workers: Workers) -> None:
    assert workers.client.send_task("celery_app.add", (2, 3)).get(timeout=10) == 5
    solo = workers.client.send_task("celery_app.where", queue="solo").get(timeout=10)
    forked = {workers.client.send_task("celery_app.where", queue="prefork").get(timeout=10) for _ in range(6)}
    assert solo == workers.processes["solo"].pid
    assert workers.processes["prefork"].pid not in forked and len(forked) >= 1  # run in the pool's children


def test_a_group_collects_every_result_over_the_rpc_backend(workers: Workers) -> None:
    add = workers.client.signature("celery_app.add")
    result = group(add.clone((i, i)) for i in range(10)).apply_async()
    assert result.get(timeout=15) == [2 * i for i in range(10)]


def test_inspect_ping_is_answered_by_both_workers(workers: Workers) -> None:
    replies = workers.client.control.inspect(timeout=1.0).ping()
    assert replies == {workers.node("solo"): {"ok": "pong"}, workers.node("prefork"): {"ok": "pong"}}


def test_both_pools_wait_on_celerys_event_loop(workers: Workers) -> None:
    # The transport is asynchronous: the worker's hub watches its consumers' doorbells (no blocking drain_events).
    replies = workers.client.control.inspect(timeout=1.0)._request("event_loop")
    assert replies == {workers.node("solo"): "asynloop", workers.node("prefork"): "asynloop"}


def test_a_broadcast_queue_gives_every_worker_the_task(workers: Workers) -> None:
    workers.client.send_task("celery_app.run_once", ("broadcast",), queue="broadcast")
    runs = workers.wait_for(lambda: len(workers.records(mark="broadcast")) >= 2 and workers.records(mark="broadcast"))
    assert sorted(run["node"] for run in runs) == sorted([workers.node("prefork"), workers.node("solo")])


def test_task_events_reach_a_monitor_from_both_workers(workers: Workers) -> None:
    seen: dict[str, str] = {}
    with workers.client.connection_for_read() as connection:
        receiver = workers.client.events.Receiver(connection, handlers={
            "task-succeeded": lambda event: seen.update({event["uuid"]: event["hostname"]})})
        [consumer] = receiver.get_consumers(functools.partial(Consumer, connection.default_channel), None)
        with consumer:  # its queue is bound before the tasks are sent
            sent = {workers.client.send_task("celery_app.add", (1, 1), queue=queue).id: queue
                    for queue in ("solo", "prefork")}
            deadline = time.monotonic() + 15
            while not set(sent) <= set(seen) and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except socket.timeout:
                    pass
    assert {seen.get(task_id) for task_id in sent} == {workers.node("solo"), workers.node("prefork")}


def test_a_countdown_longer_than_the_lease_runs_the_task_exactly_once(workers: Workers) -> None:
    sent = time.time()
    result = workers.client.send_task("celery_app.run_once", ("countdown",), countdown=5)
    assert result.get(timeout=20) == "countdown"
    time.sleep(2.5)  # two and a half leases: a lease not renewed would have let the other worker run it too
    runs = workers.records(mark="countdown")
    assert len(runs) == 1 and not runs[0]["redelivered"], runs
    assert runs[0]["at"] >= sent + 5


def test_revoke_reaches_every_worker_and_the_held_task_never_runs(workers: Workers) -> None:
    result = workers.client.send_task("celery_app.run_once", ("revoked",), countdown=2)
    workers.client.control.revoke(result.id)
    revoked = workers.client.control.inspect(timeout=1.0).revoked()
    assert {node: result.id in ids for node, ids in revoked.items()} == {workers.node("solo"): True,
                                                                        workers.node("prefork"): True}
    time.sleep(3)
    assert workers.records(mark="revoked") == []


def test_a_task_retries_after_its_countdown_until_it_succeeds(workers: Workers) -> None:
    result = workers.client.send_task("celery_app.flaky", ("retry", 2))
    assert result.get(timeout=15) == 2
    runs = workers.records(mark="retry")
    assert [run["retries"] for run in runs] == [0, 1, 2]
    assert all(later["at"] - earlier["at"] >= 0.45 for earlier, later in zip(runs, runs[1:]))


def test_a_prefork_worker_holds_its_prefetch_of_late_acked_tasks_and_no_more(workers: Workers) -> None:
    # Prefetch multiplier 4 times concurrency 2: the prefork worker holds 8 unacked tasks (2 running, 6 waiting
    # in the worker), and the queue keeps the rest for other workers, as on RabbitMQ; its event loop answers
    # remote control meanwhile.
    sent = [workers.client.send_task("celery_app.slow", (f"prefetch-{i}", 2.0), queue="prefork") for i in range(12)]
    with litemq.connect(workers.directory / "celery.db") as conn:
        def ready() -> int:
            return conn.declare_queue("prefork", passive=True).message_count

        workers.wait_for(lambda: ready() == 4, timeout=5)
        pinged = workers.client.control.inspect(timeout=1.0).ping()  # answered while both children are busy
        assert (ready(), len(workers.records(event="end"))) == (4, 0)
        assert workers.node("prefork") in pinged
        assert conn.purge_queue("prefork") == 4
    workers.client.control.revoke([result.id for result in sent])  # the held ones are skipped, not run


def test_control_shutdown_stops_every_worker(workers: Workers) -> None:
    workers.client.control.shutdown()
    for name, process in workers.processes.items():
        assert process.wait(20) == 0, workers.log(name)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Workers]:
    """Two solo workers on a file that also holds Celery's results (the SQLAlchemy backend, db+sqlite)."""
    crew = Workers(tmp_path, f"litemq:///{tmp_path}/app.db", backend=f"db+sqlite:///{tmp_path}/app.db")
    crew.start("one")
    crew.start("two")
    try:
        crew.wait_ready("one", "two")
        yield crew
    finally:
        crew.close()


@pytest.mark.alone
def test_a_killed_workers_late_acked_task_is_redelivered_once_to_the_other(pair: Workers) -> None:
    result = pair.client.send_task("celery_app.slow", ("killed", 2.0))
    first = pair.wait_for(lambda: pair.records(mark="killed", event="start"))[0]
    victim = next(name for name, process in pair.processes.items() if process.pid == first["pid"])
    pair.kill(victim)
    killed_at = time.time()
    assert result.get(timeout=20) == "killed"
    starts = pair.records(mark="killed", event="start")
    assert [(run["pid"] == first["pid"], run["redelivered"]) for run in starts] == [(True, False), (False, True)]
    assert starts[1]["at"] - killed_at < 1.0  # litemq sees the death at once: no visibility timeout to wait out
    assert len(pair.records(mark="killed", event="end")) == 1


def test_a_chord_runs_its_callback_with_the_database_result_backend_in_the_same_file(pair: Workers) -> None:
    add, total = pair.client.signature("celery_app.add"), pair.client.signature("celery_app.total")
    result = chord(add.clone((i, i)) for i in range(4))(total)
    assert result.get(timeout=20) == 12


def test_a_worker_runs_celerys_event_loop_and_a_warm_shutdown_finishes_the_task_in_hand(tmp_path: Path) -> None:
    crew = Workers(tmp_path, f"litemq:///{tmp_path}/app.db")
    try:
        crew.start("solo")
        crew.wait_ready("solo")
        assert crew.client.control.inspect(timeout=1.0)._request("event_loop") == {crew.node("solo"): "asynloop"}
        result = crew.client.send_task("celery_app.slow", ("warm", 1.0))
        crew.wait_for(lambda: crew.records(mark="warm", event="start"))
        worker = crew.processes["solo"]
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(20) == 0, crew.log("solo")
        assert result.get(timeout=1) == "warm"  # its result was sent before the worker went
        assert len(crew.records(mark="warm", event="end")) == 1
        with litemq.connect(tmp_path / "app.db") as conn:
            assert conn.declare_queue("celery", passive=True).message_count == 0  # acked, not returned
    finally:
        crew.close()


def test_a_worker_on_either_engine_runs_tasks_and_answers_remote_control(db_path: str, tmp_path: Path) -> None:
    # The one test of this module on PostgreSQL too (litemq+postgresql://...): the transport is the same code.
    crew = Workers(tmp_path, kombu_url(db_path))
    try:
        crew.start("either")
        crew.wait_ready("either")
        add = crew.client.signature("celery_app.add")
        assert group(add.clone((i, 1)) for i in range(5)).apply_async().get(timeout=20) == [1, 2, 3, 4, 5]
        assert crew.client.control.inspect(timeout=1.0)._request("event_loop") == {crew.node("either"): "asynloop"}
    finally:
        crew.close()


def test_broker_transport_names_the_transport_for_a_url_litemq_opens(tmp_path: Path) -> None:
    app = Celery("plain", broker=f"sqlite:///{tmp_path}/app.db", broker_transport="litemq.kombu:Transport")
    try:
        app.send_task("celery_app.add", (1, 2))
    finally:
        pools.reset()
        app.close()
    with litemq.connect(tmp_path / "app.db") as conn:
        assert conn.declare_queue("celery", passive=True).message_count == 1


def test_the_example_tasks_module_runs_on_a_worker_as_its_readme_says(tmp_path: Path) -> None:
    shutil.copy(REPO / "examples" / "celery" / "tasks.py", tmp_path)  # run where it is, writing nothing there
    env = dict(os.environ, PYTHONPATH=str(REPO), CELERY_BROKER_URL=f"litemq:///{tmp_path}/celery.db")
    worker = subprocess.Popen([CELERY, "-A", "tasks", "worker", "-P", "solo", "-n", "example@%h"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        sent = subprocess.run([sys.executable, "-c", "import tasks; print(tasks.add.delay(2, 3).get(timeout=20))"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert sent.stdout == "5\n", sent.stderr
        pinged = subprocess.run([CELERY, "-A", "tasks", "inspect", "ping"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert "example@" in pinged.stdout and "pong" in pinged.stdout, pinged.stderr
        subprocess.run([CELERY, "-A", "tasks", "control", "shutdown"], cwd=tmp_path, env=env, capture_output=True,
                       timeout=60)  # shutdown sends no reply: the worker's exit is the answer
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
