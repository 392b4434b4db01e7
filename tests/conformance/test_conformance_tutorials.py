"""The RabbitMQ tutorials' patterns, observed with RabbitMQ and with litemq: hello queue, work queue, durable and
persistent, fair dispatch, publish/subscribe, routing, topics, RPC (with a reply queue and with direct reply-to)."""

from __future__ import annotations

from .scenario_tools import Inbox, bodies, conformance, linger, outcome, pump, queue_state


@conformance
def test_hello_queue_delivers_the_message_to_its_consumer(pika, connect, names):
    sender, receiver = connect(), connect()
    send = sender.channel()
    queue = names.q("hello")
    declared = send.queue_declare(queue)
    send.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")
    receive = receiver.channel()
    receive.queue_declare(queue)
    inbox = Inbox()
    receive.basic_consume(queue=queue, on_message_callback=inbox, auto_ack=True)
    pump(receiver, lambda: len(inbox) == 1)
    linger(receiver)
    return {"declared": [declared.method.queue, declared.method.message_count, declared.method.consumer_count],
            "received": inbox.received, "after": queue_state(sender, queue)}


@conformance
def test_work_queue_acked_tasks_leave_and_an_unacked_one_returns_redelivered(pika, connect, names):
    producer, worker_a, worker_b = connect(), connect(), connect()
    queue = names.q("task_queue")
    channel = producer.channel()
    channel.queue_declare(queue, durable=True)
    for n in range(4):
        channel.basic_publish("", queue, f"task {n}".encode(),
                              properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    a = worker_a.channel()
    a.basic_qos(prefetch_count=1)
    held = Inbox()
    a.basic_consume(queue, held)
    pump(worker_a, lambda: len(held) == 1)
    before = queue_state(producer, queue)
    worker_a.close()  # dies holding task 0 unacked
    b = worker_b.channel()
    b.basic_qos(prefetch_count=1)
    done = Inbox(ack=True)
    b.basic_consume(queue, done)
    pump(worker_b, lambda: len(done) == 4)
    linger(worker_b)
    return {"held_by_a": held.flags, "while_a_held": before, "done_by_b": done.flags,
            "after": queue_state(producer, queue)}


@conformance(litemq_differs={"a": ["task 0", "task 1", "task 2", "task 3", "task 4", "task 5"], "b": []},
             because="consumers pull: RabbitMQ pushes to both registered workers in turn, while a litemq worker "
                     "claims when its connection processes events; this scenario processes worker a's events "
                     "first. Workers running at the same time take turns (one claim each without a prefetch).")
def test_work_queue_round_robins_tasks_between_waiting_workers(pika, connect, names):
    producer, worker_a, worker_b = connect(), connect(), connect()
    queue = names.q("task_queue")
    channel = producer.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    a, b = Inbox(ack=True), Inbox(ack=True)
    worker_a.channel().basic_consume(queue, a)
    worker_b.channel().basic_consume(queue, b)
    for n in range(6):
        channel.basic_publish("", queue, f"task {n}".encode())
    pump(worker_a, lambda: len(a) + len(b) == 6, timeout=0.5)
    pump(worker_b, lambda: len(a) + len(b) == 6, timeout=0.5)
    return {"a": a.bodies, "b": b.bodies}


@conformance
def test_durable_queue_keeps_persistent_message_properties(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()  # RabbitMQ counts a message once it is confirmed; litemq once published
    queue = names.q("durable")
    channel.queue_declare(queue, durable=True)
    channel.basic_publish("", queue, b"keep me", properties=pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent, content_type="text/plain"))
    channel.basic_publish("", queue, b"transient", properties=pika.BasicProperties(delivery_mode=1))
    again = channel.queue_declare(queue, durable=True)
    first = channel.basic_get(queue, auto_ack=True)
    second = channel.basic_get(queue, auto_ack=True)
    return {"count": again.method.message_count,
            "first": [first[2], first[1].delivery_mode, first[1].content_type, first[0].message_count],
            "second": [second[2], second[1].delivery_mode, second[0].message_count]}


@conformance
def test_fair_dispatch_with_prefetch_one_skips_the_busy_worker(pika, connect, names):
    producer, busy, idle = connect(), connect(), connect()
    queue = names.q("fair")
    channel = producer.channel()
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"slow job")
    busy_channel = busy.channel()
    busy_channel.basic_qos(prefetch_count=1)
    busy_inbox = Inbox()  # never acks
    busy_channel.basic_consume(queue, busy_inbox)
    pump(busy, lambda: len(busy_inbox) == 1)
    idle_channel = idle.channel()
    idle_channel.basic_qos(prefetch_count=1)
    idle_inbox = Inbox(ack=True)
    idle_channel.basic_consume(queue, idle_inbox)
    for n in range(4):
        channel.basic_publish("", queue, f"quick job {n}".encode())
    pump(idle, lambda: len(idle_inbox) == 4)
    linger(busy)
    return {"busy": busy_inbox.bodies, "idle": idle_inbox.bodies, "after": queue_state(producer, queue)}


@conformance
def test_fanout_copies_each_message_to_every_bound_queue(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    logs = names.x("logs")
    channel.exchange_declare(exchange=logs, exchange_type="fanout")
    queues = []
    for _ in range(2):
        result = channel.queue_declare(queue="", exclusive=True)
        channel.queue_bind(exchange=logs, queue=result.method.queue)
        queues.append(result.method.queue)
    channel.basic_publish(exchange=logs, routing_key="", body=b"info: one")
    channel.basic_publish(exchange=logs, routing_key="ignored", body=b"info: two")
    received = []
    for queue in queues:
        inbox = Inbox()
        channel.basic_consume(queue, inbox, auto_ack=True)
        pump(connection, lambda: len(inbox) == 2)
        received.append(inbox.received)
    return {"server_named": [q.startswith("amq.gen-") for q in queues], "received": received}


@conformance
def test_direct_exchange_routes_by_exact_key(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    direct_logs = names.x("direct_logs")
    channel.exchange_declare(direct_logs, exchange_type="direct")
    errors_only, everything = names.q("errors"), names.q("all")
    channel.queue_declare(errors_only)
    channel.queue_declare(everything)
    channel.queue_bind(errors_only, direct_logs, routing_key="error")
    for severity in ("info", "warning", "error"):
        channel.queue_bind(everything, direct_logs, routing_key=severity)
    for severity in ("info", "warning", "error", "debug", "ERROR"):
        channel.basic_publish(direct_logs, severity, f"{severity} message".encode())
    return {"errors": bodies(channel, errors_only), "all": bodies(channel, everything)}


@conformance
def test_topic_tutorial_bindings(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    topic_logs = names.x("topic_logs")
    channel.exchange_declare(topic_logs, exchange_type="topic")
    q1, q2 = names.q("Q1"), names.q("Q2")
    for queue, keys in ((q1, ["*.orange.*"]), (q2, ["*.*.rabbit", "lazy.#"])):
        channel.queue_declare(queue)
        for key in keys:
            channel.queue_bind(queue, topic_logs, key)
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox", "lazy.pink.rabbit",
            "quick.brown.fox", "orange", "quick.orange.new.rabbit", "lazy.orange.new.rabbit", "lazy"]
    for key in keys:
        channel.basic_publish(topic_logs, key, key.encode())
    return {"Q1": bodies(channel, q1), "Q2": bodies(channel, q2)}


def _rpc_server(connection, queue):
    """The tutorial's RPC server: answers n with fib(n), to reply_to with the request's correlation_id."""
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_qos(prefetch_count=1)
    seen = []

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def on_request(ch, method, props, body):
        seen.append([body.decode(), props.correlation_id, props.reply_to.startswith("amq.rabbitmq.reply-to.")
                     or props.reply_to.startswith("amq.gen-")])
        # A server may check that a direct reply-to requester is still there with a passive declare; an
        # exclusive callback queue of another connection answers 405 instead.
        checker = ch.connection.channel()
        seen[-1].append(outcome(lambda: checker.queue_declare(props.reply_to, passive=True)))
        if checker.is_open:
            checker.close()
        ch.basic_publish("", props.reply_to, str(fib(int(body))).encode(),
                         properties=type(props)(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_request)
    return seen


@conformance
def test_rpc_replies_reach_the_callback_queue_with_the_correlation_id(pika, connect, names):
    server, client = connect(), connect()
    rpc_queue = names.q("rpc_queue")
    seen = _rpc_server(server, rpc_queue)
    channel = client.channel()
    callback_queue = channel.queue_declare("", exclusive=True).method.queue
    replies = []
    channel.basic_consume(callback_queue, lambda ch, m, props, body: replies.append([props.correlation_id,
                                                                                     body.decode()]),
                          auto_ack=True)
    for n, corr in ((10, "c-1"), (1, "c-2"), (20, "c-3")):
        channel.basic_publish("", rpc_queue, str(n).encode(),
                              properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr))
    pump(server, lambda: len(seen) == 3)
    pump(client, lambda: len(replies) == 3)
    return {"requests": seen, "replies": replies, "rpc_queue": queue_state(client, rpc_queue)}


@conformance
def test_rpc_with_direct_reply_to(pika, connect, names):
    server, client = connect(), connect()
    rpc_queue = names.q("rpc_queue")
    seen = _rpc_server(server, rpc_queue)
    channel = client.channel()
    replies = []
    channel.basic_consume("amq.rabbitmq.reply-to",
                          lambda ch, m, props, body: replies.append([props.correlation_id, body.decode(),
                                                                     m.routing_key.startswith("amq.rabbitmq.reply-to.")]),
                          auto_ack=True)
    for n, corr in ((7, "a"), (12, "b")):
        channel.basic_publish("", rpc_queue, str(n).encode(),
                              properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id=corr))
    pump(server, lambda: len(seen) == 2)
    pump(client, lambda: len(replies) == 2)
    return {"requests": seen, "replies": replies}


@conformance
def test_direct_reply_to_needs_an_auto_ack_consumer(pika, connect, names):
    connection = connect()
    acking = connection.channel()
    consume_with_acks = outcome(lambda: acking.basic_consume("amq.rabbitmq.reply-to", lambda *a: None))
    publisher = connection.channel()
    publisher.confirm_delivery()
    queue = names.q("requests")
    publisher.queue_declare(queue)
    publish_without_consumer = outcome(lambda: publisher.basic_publish(
        "", queue, b"?", properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")))
    return {"consume_with_acks": consume_with_acks, "publish_without_consumer": publish_without_consumer,
            "channels_open": [acking.is_open, publisher.is_open], "connection_open": connection.is_open,
            "queue": queue_state(connection, queue)}


@conformance
def test_a_reply_to_a_requester_that_has_gone_is_dropped_or_returned(pika, connect, names):
    server, client = connect(), connect()
    rpc_queue = names.q("rpc_queue")
    setup = server.channel()
    setup.confirm_delivery()
    setup.queue_declare(rpc_queue)
    requester = client.channel()
    requester.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    requester.basic_publish("", rpc_queue, b"question",
                            properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="q1"))
    callback_queue = requester.queue_declare("", exclusive=True).method.queue
    requester.basic_publish("", rpc_queue, b"question 2",
                            properties=pika.BasicProperties(reply_to=callback_queue, correlation_id="q2"))
    client.close()
    answers = server.channel()
    answers.confirm_delivery()
    observed = []
    for _ in range(2):
        method, properties, body = answers.basic_get(rpc_queue, auto_ack=True)
        observed.append([body.decode(), outcome(lambda: answers.basic_publish(
            "", properties.reply_to, b"answer", properties=pika.BasicProperties(correlation_id=properties.correlation_id),
            mandatory=True))])
    return {"replies": observed, "channel_open": answers.is_open}
