"""The RabbitMQ tutorial's programs (examples/pika: pika's own code with `from litemq import pika`; examples/native:
the same programs in litemq's API) run as real processes on one ./litemq.db and print what the tutorial says; on
PostgreSQL they run unchanged, $LITEMQ_URL naming the server.

Consumers loop forever, as the tutorial's do: each test reads their output until the lines it expects, then kills
them by pid. Where a consumer must get *only* some messages, the last message published goes to every consumer,
so anything misrouted would show up before it.
"""

import ast
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import PYTHON, REPO
from engines import make_broker, sql_rows
from services import rabbitmq_channel, unique_name  # noqa: F401 (rabbitmq_channel is a fixture)

EXAMPLES = REPO / "examples"
PROGRAMS = ["send", "receive", "new_task", "worker", "emit_log", "receive_logs", "emit_log_direct",
            "receive_logs_direct", "emit_log_topic", "receive_logs_topic", "rpc_server", "rpc_client"]
TIMEOUT = 20  # seconds any one expected line may take; a bound, never a speed assertion
WAITING_FOR_MESSAGES = " [*] Waiting for messages. To exit press CTRL+C"
WAITING_FOR_LOGS = " [*] Waiting for logs. To exit press CTRL+C"
TIMED_OUT = object()


class Running:
    """A program that runs until killed; a thread collects its stdout lines."""

    def __init__(self, args, cwd, env):
        self.args = args
        self.process = subprocess.Popen([PYTHON, "-u", *map(str, args)], cwd=cwd, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def read_until(self, last):
        """Its next lines, up to and including ``last``."""
        lines = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = TIMED_OUT
            if line is TIMED_OUT:  # failed outside the except block, so the report shows no chained traceback
                pytest.fail(f"{self.args} printed {lines} and no {last!r} within {TIMEOUT}s; "
                            f"stderr: {self.stop()}")
            if line is None:
                pytest.fail(f"{self.args} exited ({self.process.wait()}) after {lines}; stderr: {self.stop()}")
            lines.append(line)
            if line == last:
                return lines

    def stop(self):
        """Kill it (by pid) and return what it wrote to stderr."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        return self.process.stderr.read()


@pytest.fixture
def start(tmp_path, program_env, program_broker):
    """start(flavour, program, *args): a long-running example program in tmp_path, killed at the end."""
    make_broker(program_broker)  # the programs' first connect finds it made: none of them is about creating it
    started = []

    def start(flavour, program, *args):
        running = Running([EXAMPLES / flavour / f"{program}.py", *args], tmp_path, program_env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def run(tmp_path, program_env, program_broker):
    """run(flavour, program, *args): run an example program in tmp_path to its end; returns its stdout lines."""
    make_broker(program_broker)

    def run(flavour, program, *args):
        result = subprocess.run([PYTHON, "-u", str(EXAMPLES / flavour / f"{program}.py"), *args], cwd=tmp_path,
                                env=program_env, capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stderr) == (0, ""), (program, args)
        return result.stdout.splitlines()

    return run


flavours = pytest.mark.parametrize("flavour", ["pika", "native", "aio_pika"])


# --- 3.2.1 the simple queue

@flavours
def test_receive_prints_each_hello_world_sent_before_or_after_it_started(flavour, start, run, tmp_path, engine):
    assert run(flavour, "send") == [" [x] Sent 'Hello World!'"]
    receiver = start(flavour, "receive")
    assert receiver.read_until(" [x] Received b'Hello World!'") == [
        WAITING_FOR_MESSAGES, " [x] Received b'Hello World!'"]
    assert run(flavour, "send") == [" [x] Sent 'Hello World!'"]
    assert receiver.read_until(" [x] Received b'Hello World!'") == [" [x] Received b'Hello World!'"]
    assert receiver.stop() == ""
    assert (tmp_path / "litemq.db").exists() == (engine == "sqlite")  # on a server: no file made


def test_pika_and_native_programs_talk_through_the_same_file(start, run):
    receiver = start("native", "receive")
    receiver.read_until(WAITING_FOR_MESSAGES)
    run("pika", "send")
    assert receiver.read_until(" [x] Received b'Hello World!'") == [" [x] Received b'Hello World!'"]
    server = start("pika", "rpc_server")
    server.read_until(" [x] Awaiting RPC requests")
    assert run("native", "rpc_client", "10") == [" [.] Got 55"]


# --- 3.2.2 acks, durability, fair dispatch

@flavours
def test_new_task_stores_persistent_messages_in_a_durable_queue(flavour, run, program_broker):
    assert run(flavour, "new_task", "task", "1") == [" [x] Sent 'task 1'"]
    assert run(flavour, "new_task") == [" [x] Sent 'Hello World!'"]
    assert sql_rows(program_broker, "SELECT durable FROM litemq_queues WHERE name = 'hello2'") == [(1,)]
    rows = sql_rows(program_broker, "SELECT body, properties FROM litemq_messages WHERE queue = 'hello2' ORDER BY id")
    assert [body for body, _ in rows] == [b"task 1", b"Hello World!"]
    assert all('"delivery_mode":2' in properties for _, properties in rows)


@flavours
def test_a_busy_worker_is_given_no_second_task_and_its_unacked_task_goes_to_another(flavour, start, run):
    for n in range(1, 5):
        run(flavour, "new_task", f"task {n}")
    slow = start(flavour, "worker", "60")  # holds task 1, unacked, for a minute
    assert slow.read_until(" [x] Received b'task 1'") == [WAITING_FOR_MESSAGES, " [x] Received b'task 1'"]
    fast = start(flavour, "worker", "0")
    # prefetch_count=1: the slow worker took one task, not the queue; the fast one does the rest meanwhile.
    assert fast.read_until(" [x] Received b'task 4'") == [
        WAITING_FOR_MESSAGES, " [x] Received b'task 2'", " [x] Done", " [x] Received b'task 3'", " [x] Done",
        " [x] Received b'task 4'"]
    slow.stop()  # dies without acking task 1: it goes back to the queue
    assert fast.read_until(" [x] Received b'task 1'") == [" [x] Done", " [x] Received b'task 1'"]
    assert fast.read_until(" [x] Done") == [" [x] Done"]
    assert fast.stop() == ""


# --- 3.2.3 exchanges

@flavours
def test_every_fanout_consumer_gets_the_log(flavour, start, run):
    receivers = [start(flavour, "receive_logs") for _ in range(2)]
    for receiver in receivers:
        assert receiver.read_until(WAITING_FOR_LOGS) == [WAITING_FOR_LOGS]
    assert run(flavour, "emit_log") == [" [x] Sent 'info: Hello World!'"]
    for receiver in receivers:
        assert receiver.read_until(" [x] b'info: Hello World!'") == [" [x] b'info: Hello World!'"]
        assert receiver.stop() == ""


@flavours
def test_direct_consumers_get_only_the_severities_they_bound(flavour, start, run):
    info = start(flavour, "receive_logs_direct", "info", "warning")
    error = start(flavour, "receive_logs_direct", "error", "warning")
    info.read_until(WAITING_FOR_LOGS)
    error.read_until(WAITING_FOR_LOGS)
    assert run(flavour, "emit_log_direct", "debug", "debug: noise") == [" [x] Sent 'debug: noise'"]
    assert run(flavour, "emit_log_direct") == [" [x] Sent 'info: Hello Yuan!'"]
    run(flavour, "emit_log_direct", "error", "error: disk full")
    run(flavour, "emit_log_direct", "warning", "warning: last")  # both bound it: anything misrouted came before
    assert info.read_until(" [x] b'warning: last'") == [" [x] b'info: Hello Yuan!'", " [x] b'warning: last'"]
    assert error.read_until(" [x] b'warning: last'") == [" [x] b'error: disk full'", " [x] b'warning: last'"]


@flavours
def test_receive_logs_direct_without_severities_prints_its_usage(flavour, tmp_path, subprocess_env):
    program = EXAMPLES / flavour / "receive_logs_direct.py"
    result = subprocess.run([PYTHON, str(program)], cwd=tmp_path, env=subprocess_env, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"Usage: {program} [info] [warning] [error]\n")


@pytest.mark.slow
@flavours
def test_topic_consumers_get_only_the_keys_their_patterns_match(flavour, start, run):
    news = start(flavour, "receive_logs_topic")  # the tutorial's "#.news"
    europe = start(flavour, "receive_logs_topic", "europe.*")
    news.read_until(WAITING_FOR_LOGS)
    europe.read_until(WAITING_FOR_LOGS)
    assert run(flavour, "emit_log_topic") == [" [x] Sent 'info: Hello ERU!'"]  # europe.weather
    run(flavour, "emit_log_topic", "europe.weather.today", "matches neither")
    run(flavour, "emit_log_topic", "usa.news", "usa news")
    run(flavour, "emit_log_topic", "news", "just news")  # '#' matches zero words
    run(flavour, "emit_log_topic", "europe.news", "europe news")  # both: anything misrouted came before
    assert news.read_until(" [x] b'europe news'") == [" [x] b'usa news'", " [x] b'just news'",
                                                      " [x] b'europe news'"]
    assert europe.read_until(" [x] b'europe news'") == [" [x] b'info: Hello ERU!'", " [x] b'europe news'"]


# --- 4 RPC

@pytest.mark.slow
@flavours
def test_rpc_client_prints_the_fibonacci_number_the_server_computed(flavour, start, run):
    server = start(flavour, "rpc_server")
    server.read_until(" [x] Awaiting RPC requests")
    # The pika client prints "no msg..." each time round its polling loop (at least once); the answer comes last.
    assert [line for line in run(flavour, "rpc_client") if line != "no msg..."] == [" [.] Got 832040"]
    assert [line for line in run(flavour, "rpc_client", "10") if line != "no msg..."] == [" [.] Got 55"]
    assert server.read_until(" [.] fib(10)") == [" [.] fib(30)", " [.] fib(10)"]
    assert server.stop() == ""


# --- the pika examples are the tutorial's programs

def test_every_tutorial_program_is_there_in_both_flavours():
    for flavour in ("pika", "native", "aio_pika"):
        assert sorted(path.stem for path in (EXAMPLES / flavour).glob("*.py")) == sorted(PROGRAMS)


@pytest.mark.parametrize("facade, others", [("pika", {"sys", "time", "uuid"}), ("aio_pika", {"asyncio", "sys", "uuid"})])
@pytest.mark.parametrize("program", PROGRAMS)
def test_facade_example_imports_litemq_facade_in_place_of_the_library_and_nothing_else_of_litemq(program, facade,
                                                                                               others):
    text = (EXAMPLES / facade / f"{program}.py").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines.count(f"from litemq import {facade}") == 1
    assert [line for line in lines if re.match(rf"\s*(import|from)\s+{facade}\b", line)] == []
    tree = ast.parse(text)
    docstring = ast.get_docstring(tree, clean=False)
    assert docstring and f"from litemq import {facade}" in docstring  # it says what was changed
    imported = {alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imported <= {f"litemq.{facade}", *others}
    code = text.replace(docstring, "")
    assert code.count("litemq") == 1  # the import line: everything else is the library's API


def test_aio_pika_programs_run_unchanged_on_rabbitmq_with_the_real_aio_pika(rabbitmq_channel, tmp_path,
                                                                            subprocess_env):
    pytest.importorskip("aio_pika")
    hello, rpc = unique_name("tutorial-hello"), unique_name("tutorial-rpc")
    for program in ("send", "receive", "rpc_server", "rpc_client"):
        text = (EXAMPLES / "aio_pika" / f"{program}.py").read_text(encoding="utf-8")
        text = text.replace("from litemq import aio_pika", "import aio_pika").replace('"hello"', repr(hello))
        (tmp_path / f"{program}.py").write_text(text.replace('"rpc_queue"', repr(rpc)), encoding="utf-8")
    started = []
    try:
        sent = subprocess.run([PYTHON, "send.py"], cwd=tmp_path, env=subprocess_env, capture_output=True,
                              text=True, timeout=30)
        assert sent.stdout == " [x] Sent 'Hello World!'\n", sent.stderr
        started.append(Running(["receive.py"], tmp_path, subprocess_env))
        assert started[-1].read_until(" [x] Received b'Hello World!'") == [
            WAITING_FOR_MESSAGES, " [x] Received b'Hello World!'"]
        started.append(Running(["rpc_server.py"], tmp_path, subprocess_env))
        started[-1].read_until(" [x] Awaiting RPC requests")
        called = subprocess.run([PYTHON, "rpc_client.py", "10"], cwd=tmp_path, env=subprocess_env,
                                capture_output=True, text=True, timeout=30)
        assert called.stdout == " [.] Got 55\n", called.stderr
        assert started[-1].read_until(" [.] fib(10)") == [" [.] fib(10)"]
        assert not (tmp_path / "litemq.db").exists()  # the real aio-pika, not litemq's
    finally:
        for running in started:
            running.stop()
        rabbitmq_channel.queue_delete(hello)
        rabbitmq_channel.queue_delete(rpc)


def test_pika_send_and_receive_run_unchanged_on_rabbitmq(rabbitmq_channel, tmp_path, subprocess_env):
    name = unique_name("tutorial-hello")
    for program in ("send", "receive"):
        text = (EXAMPLES / "pika" / f"{program}.py").read_text(encoding="utf-8")
        text = text.replace("from litemq import pika", "import pika").replace("'hello'", repr(name))
        (tmp_path / f"{program}.py").write_text(text, encoding="utf-8")
    receiver = None
    try:
        sent = subprocess.run([PYTHON, "send.py"], cwd=tmp_path, env=subprocess_env, capture_output=True,
                              text=True, timeout=30)
        assert sent.stdout == " [x] Sent 'Hello World!'\n", sent.stderr
        receiver = Running(["receive.py"], tmp_path, subprocess_env)
        assert receiver.read_until(" [x] Received b'Hello World!'") == [
            WAITING_FOR_MESSAGES, " [x] Received b'Hello World!'"]
        assert not (tmp_path / "litemq.db").exists()  # the real pika, not litemq's
    finally:
        if receiver is not None:
            receiver.stop()
        rabbitmq_channel.queue_delete(name)
