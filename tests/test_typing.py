"""The public API is typed: ``mypy --strict`` passes a correct user program and names the mistake in a wrong one
(a misspelt option, a wrong type, a channel method that does not exist)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import litemq
from litemq.connection import Connection

REPO = Path(__file__).resolve().parent.parent

GOOD_PROGRAM = '''
    import signal

    import litemq
    from litemq import pika
    from litemq.pika import spec


    def handle(delivery: litemq.Delivery) -> None:
        print(delivery.body.decode(), delivery.properties.correlation_id, delivery.routing_key)
        delivery.ack()


    def answer(request: litemq.Delivery) -> bytes:
        return request.body.upper()


    def native() -> None:
        with litemq.connect("jobs.db", synchronous="FULL", lease_seconds=30, consumer_timeout=600,
                            renew_leases=True, max_message_bytes=1 << 20, busy_timeout=5.0) as conn:
            info = conn.declare_queue("jobs", durable=True, arguments={"x-max-length": 10})
            print(info.queue, info.message_count)
            conn.publish("", "jobs", b"bytes", litemq.Properties(delivery_mode=2, headers={"a": 1}))
            conn.publish("", "jobs", "text", mandatory=True, delay=1.5)
            conn.publish("", "jobs", bytearray(b"bytearray"))
            conn.publish("", "jobs", memoryview(b"memoryview"))
            conn.publish_many("", "jobs", [b"a", "b", bytearray(b"c"), memoryview(b"d")])
            channel = conn.channel()
            delivery = channel.get("jobs")
            if delivery is not None:
                channel.ack_and_publish(delivery.delivery_tag, "", "jobs", memoryview(b"next"))
            conn.consume("jobs", prefetch=10, inactivity_timeout=1).run(handle, stop_on=(signal.SIGTERM,))
            for warm in conn.consume("jobs").stop_on(signal.SIGTERM, signal.SIGINT):
                warm.ack()
            for each in conn.consume_many(["jobs", "other"], prefetch=5, inactivity_timeout=1):
                each.nack(requeue=False)
            with litemq.RpcClient(conn) as client:
                reply: bytes = client.call("rpc", bytearray(b"question"), timeout=1)
                print(reply)
            litemq.RpcServer(conn, "rpc", answer).serve(inactivity_timeout=0.1)


    def with_pika() -> None:
        connection = pika.BlockingConnection(pika.URLParameters("sqlite:///jobs.db"))
        channel: pika.BlockingChannel = connection.channel()
        queue: str = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.basic_qos(prefetch_count=1)
        channel.basic_publish(exchange="", routing_key=queue, body="Hello",
                              properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))

        def on_message(ch: pika.BlockingChannel, method: spec.Basic.Deliver, properties: pika.BasicProperties,
                       body: bytes) -> None:
            ch.basic_ack(delivery_tag=method.delivery_tag)

        channel.basic_consume(queue=queue, on_message_callback=on_message)
        got, properties, body = channel.basic_get(queue)
        if got is not None:
            channel.basic_ack(got.delivery_tag)
        for method, properties, body in channel.consume(queue):
            channel.basic_ack(method.delivery_tag)
            print(body.decode())
            break
        for maybe, _, _ in channel.consume(queue, inactivity_timeout=1):
            if maybe is None:
                break
        connection.close()
'''

# Each wrong program, and what mypy must say about it.
WRONG_PROGRAMS = {
    "misspelt_option": ('litemq.connect("jobs.db", lease_second=5)',
                        'Unexpected keyword argument "lease_second" for "connect"'),
    "wrong_option_type": ('litemq.connect("jobs.db", lease_seconds="5")',
                          'Argument "lease_seconds" to "connect" has incompatible type "str"; expected "float"'),
    "unknown_synchronous": ('litemq.connect("jobs.db", synchronous="fsync")',
                            'Argument "synchronous" to "connect" has incompatible type "Literal[\'fsync\']"'),
    "wrong_body": ('litemq.connect().publish("", "jobs", 5)',
                   'Argument 3 to "publish" of "Channel" has incompatible type "int"; '
                   'expected "bytes | bytearray | memoryview[int] | str"'),
    "wrong_rpc_body": ('litemq.RpcClient(litemq.connect()).call("rpc", {"n": 1})',
                       'Argument 2 to "call" of "RpcClient" has incompatible type "dict[str, int]"'),
    "wrong_channel_method": ('pika.BlockingConnection().channel().basic_publsh("", "jobs", b"")',
                             '"BlockingChannel" has no attribute "basic_publsh"'),
    "stop_on_not_a_signal": ('litemq.connect().consume("jobs").run(print, stop_on="SIGTERM")',
                             'Argument "stop_on" to "run" of "Consuming" has incompatible type "str"'),
    "optional_delivery": ('print(litemq.connect().get("jobs").body)',
                          'Item "None" of "Delivery | None" has no attribute "body"'),
}


def run_mypy(tmp_path: Path, programs: dict[str, str]) -> dict[str, str]:
    """mypy --strict over the programs, as a user runs it on code importing litemq; its output per program.
    Errors inside litemq are not the user's (``--follow-imports=silent``): only the programs are judged."""
    for name, source in programs.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "MYPYPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
         "--cache-dir", str(tmp_path / ".mypy_cache"), *[f"{name}.py" for name in programs]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert not result.stderr.strip(), result.stderr  # mypy is in the test extra: pip install -e '.[test]'
    output = {name: "" for name in programs}
    for line in result.stdout.splitlines():
        name = line.split(".py:", 1)[0]
        assert name in output, line
        output[name] += line + "\n"
    return output


def test_mypy_strict_passes_a_correct_program_and_names_each_mistake(tmp_path: Path) -> None:
    header = "import litemq\nfrom litemq import pika\n\n"
    programs = {"good": GOOD_PROGRAM,
                **{name: header + wrong for name, (wrong, _) in WRONG_PROGRAMS.items()}}
    output = run_mypy(tmp_path, programs)
    assert output["good"] == ""
    for name, (_, message) in WRONG_PROGRAMS.items():
        assert message in output[name], (name, output[name])


def test_connect_takes_exactly_the_options_of_connection() -> None:
    def options(function: object) -> list[tuple[str, object, object]]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return [(p.name, p.default, p.annotation) for p in parameters if p.name != "self"]

    assert options(litemq.connect) == options(Connection.__init__)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY
               for p in list(inspect.signature(litemq.connect).parameters.values())[1:])


def test_connect_passes_every_option_through(db_path: str) -> None:
    with litemq.connect(db_path, lease_seconds=7, consumer_timeout=99, max_message_bytes=1000,
                        renew_leases=False) as conn:
        session = conn._session
        assert (session.lease_seconds, session.consumer_timeout, session.max_message_bytes) == (7, 99, 1000)
        with pytest.raises(litemq.MessageTooLarge):
            conn.publish("", "q", b"x" * 1001)
