"""Properties that pika cannot send: pika raises at basic_publish, before anything reaches RabbitMQ, and the
channel goes on. litemq.pika raises the same errors, and stores nothing."""

from __future__ import annotations

from .scenario_tools import conformance, outcome, queue_state


def _nested(levels):
    table = {"leaf": 1}
    for _ in range(levels - 1):
        table = {"k": table}
    return table


@conformance(litemq_differs={"headers_150_levels_deep": "ValueError", "queue_after": [1, 0]},
             because="litemq refuses headers nested deeper than 100 levels (README: Messages), which RabbitMQ takes")
def test_properties_pika_cannot_encode_are_refused_at_publish_and_the_channel_goes_on(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    queue = names.q("q")
    channel.queue_declare(queue)
    headers_of = {
        "lone_surrogate_in_correlation_id": lambda: pika.BasicProperties(correlation_id="a\ud800"),
        "lone_surrogate_in_a_header_key": lambda: pika.BasicProperties(headers={"k\ud800": 1}),
        "lone_surrogate_in_a_header_value": lambda: pika.BasicProperties(headers={"k": ["x\udc00"]}),
        "infinite_x_delay": lambda: pika.BasicProperties(headers={"x-delay": float("inf")}),
        "headers_100_levels_deep": lambda: pika.BasicProperties(headers=_nested(100)),
        "headers_150_levels_deep": lambda: pika.BasicProperties(headers=_nested(150)),
    }
    observed = {name: outcome(lambda: channel.basic_publish("", queue, b"m", make()))
                for name, make in headers_of.items()}
    observed["channel_open"] = channel.is_open
    observed["queue_after"] = queue_state(connection, queue)
    return observed
