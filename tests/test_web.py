"""``litemq web``'s JSON API, ``/metrics`` and its safety, on both engines: the WSGI app called in-process
(web_helpers.call) against a broker that real producer and consumer processes use, and the command as a real
process. The pages in a browser are test_web_browser.py's."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import litemq
from litemq.web import management_app, mount
from services import POSTGRESQL_SERVER, postgresql_url  # noqa: F401  (a fixture)
from web_helpers import call, csrf_of, start_web, wait_until
from web_workers import hold_deliveries, publish_steadily

SCRIPT_NAME = "<script>alert('x')</script>"
WAIT = 20.0


@pytest.fixture
def app(db_path: str) -> Iterator[Any]:
    served = management_app(db_path, sample_seconds=0.1)
    yield served
    served.rates.stop()
    served.source.close()


def _ready_file(tmp_path: Path, name: str) -> None:
    wait_until(lambda: (tmp_path / f"ready-{name}").exists() or (tmp_path / "errors").exists(), WAIT,
               f"the {name} process to start")
    assert not (tmp_path / "errors").exists(), list((tmp_path / "errors").iterdir())


# --- the JSON API reads what the broker holds

def test_overview_and_queues_count_what_the_broker_holds(conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue("jobs", durable=True, arguments={"x-message-ttl": 60000, "x-dead-letter-exchange": "dlx",
                                                        "x-max-length": 100})
    conn.declare_queue("later")
    conn.declare_exchange("delay", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    conn.bind_queue("later", "delay", "later")
    for n in range(5):
        conn.publish("", "jobs", f"job {n}")
    conn.publish("delay", "later", "soon", litemq.Properties(headers={"x-delay": 600_000}))
    held = conn.get("jobs")
    assert held is not None

    overview = call(app, "GET", "/api/overview").json()
    assert overview["totals"] == {"queues": 2, "ready": 4, "unacked": 1, "delayed": 1, "connections": 1,
                                  "consumers": 0}
    assert overview["read_only"] is False
    queues = {q["name"]: q for q in call(app, "GET", "/api/queues").json()}
    assert (queues["jobs"]["ready"], queues["jobs"]["unacked"], queues["jobs"]["delayed"]) == (4, 1, 0)
    assert queues["jobs"]["ready_bytes"] == 4 * len("job 0")
    assert queues["jobs"]["badges"] == ["D", "DLX dlx", "max 100", "TTL 60000 ms"]
    assert (queues["later"]["ready"], queues["later"]["delayed"]) == (0, 1)


def test_a_queue_shows_its_bindings_consumers_and_messages_without_taking_them(
        db_path: str, conn: litemq.Connection, app: Any, processes: Any, tmp_path: Path) -> None:
    conn.declare_queue("work", durable=True)
    conn.declare_exchange("events", "topic")
    conn.bind_queue("work", "events", "order.*")
    for n in range(5):
        conn.publish("events", "order.new", f"order {n}", litemq.Properties(headers={"n": n}))
    conn.publish("", "work", b"\xff\x00binary")
    processes.start(hold_deliveries, db_path, "work", 2, str(tmp_path))
    _ready_file(tmp_path, "consumer")

    found = call(app, "GET", "/api/queue", {"name": "work", "browse": 10}).json()
    assert (found["ready"], found["unacked"], found["consumers"]) == (4, 2, 1)
    assert found["bindings"] == [{"exchange": "events", "routing_key": "order.*", "arguments": {}}]
    [consumer] = found["consumer_details"]
    assert (consumer["consumer_tag"], consumer["prefetch_count"], consumer["unacked"], consumer["alive"]) == \
        ("holder", 2, 2, True)
    assert consumer["pid"] == processes.started[0].pid
    bodies = [(m["body"], m["body_encoding"]) for m in found["messages"]]
    assert bodies == [("order 2", "text"), ("order 3", "text"), ("order 4", "text"), ("ff0062696e617279", "hex")]
    assert found["messages"][0]["properties"] == {"headers": {"n": 2}}
    # Browsing took nothing: the counts are what they were.
    again = call(app, "GET", "/api/queue", {"name": "work"}).json()
    assert (again["ready"], again["unacked"], again["messages"]) == (4, 2, [])


def test_a_dead_lettered_message_shows_its_x_death(conn: litemq.Connection, app: Any) -> None:
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead")
    conn.bind_queue("dead", "dlx")
    conn.declare_queue("work", arguments={"x-dead-letter-exchange": "dlx"})
    conn.publish("", "work", "poison")
    delivery = conn.get("work")
    assert delivery is not None
    delivery.reject(requeue=False)
    [message] = call(app, "GET", "/api/queue", {"name": "dead", "browse": 5}).json()["messages"]
    [death] = message["properties"]["headers"]["x-death"]
    assert (death["queue"], death["reason"], death["count"]) == ("work", "rejected", 1)


def test_connections_say_who_is_alive_and_what_they_hold(db_path: str, conn: litemq.Connection, app: Any,
                                                         processes: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    conn.declare_queue("work", durable=True)
    for n in range(3):
        conn.publish("", "work", f"{n}")
    process = processes.start(hold_deliveries, db_path, "work", 3, str(tmp_path))
    _ready_file(tmp_path, "consumer")
    rows = {c["pid"]: c for c in call(app, "GET", "/api/connections").json()}
    assert rows[process.pid]["alive"] is True
    assert rows[process.pid]["unacked"] == 3
    assert [(c["consumer_tag"], c["queue"]) for c in rows[process.pid]["consumers"]] == [("holder", "work")]
    # Killed: its row stays until a live connection reaps it, and says meanwhile that it is dead. This test's own
    # connection would reap it within SWEEP_SECONDS (its background thread looks), racing the page: not here.
    monkeypatch.setattr(conn._session, "sweep", lambda *args, **kwargs: False)
    processes.kill_all()
    wait_until(lambda: {c["pid"]: c["alive"] for c in call(app, "GET", "/api/connections").json()}
               .get(process.pid) is False, WAIT, "the killed consumer to show as dead")


def test_connections_say_how_many_messages_each_consumer_holds(conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue("work")
    conn.declare_queue("other")
    for n in range(3):
        conn.publish("", "work", f"{n}")
        conn.publish("", "other", f"{n}")
    first, second = conn.channel(), conn.channel()
    working = first.consume("work", prefetch=2, consumer_tag="worker")
    assert [working.get(timeout=WAIT) is not None for _ in range(2)] == [True, True]
    assert first.get("other") is not None  # held by the channel, by no consumer of it
    other = second.consume("other", prefetch=1, consumer_tag="another")
    assert other.get(timeout=WAIT) is not None
    mine = {c["pid"]: c for c in call(app, "GET", "/api/connections").json()}[os.getpid()]
    assert mine["unacked"] == 4
    assert sorted((c["consumer_tag"], c["queue"], c["unacked"]) for c in mine["consumers"]) == [
        ("another", "other", 1), ("worker", "work", 2)]
    assert "prefetch 2, holds 2" in call(app, "GET", "/connections").text


def test_the_queues_totals_count_publishes_deliveries_redeliveries_and_acks(conn: litemq.Connection,
                                                                           app: Any) -> None:
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead")
    conn.bind_queue("dead", "dlx")
    conn.declare_queue("work", arguments={"x-dead-letter-exchange": "dlx"})
    for n in range(5):
        conn.publish("", "work", f"{n}")
    first = conn.get("work")
    assert first is not None
    first.nack(requeue=True)  # back: delivered again below, as a redelivery
    for _ in range(3):
        delivery = conn.get("work")
        assert delivery is not None
        delivery.ack()
    rejected = conn.get("work")
    assert rejected is not None
    rejected.reject(requeue=False)  # settled here, published into dead
    assert conn.get("work", auto_ack=True) is not None  # delivered, and never acked: no ack happens
    queues = {q["name"]: q for q in call(app, "GET", "/api/queues").json()}
    assert queues["work"]["totals"] == {"published": 5, "delivered": 6, "redelivered": 1, "acked": 4}
    assert queues["work"]["ready"] == 0
    assert queues["dead"]["totals"] == {"published": 1, "delivered": 0, "redelivered": 0, "acked": 0}
    lines = call(app, "GET", "/metrics").text.splitlines()
    assert 'litemq_queue_messages_published_total{queue="work"} 5' in lines
    assert 'litemq_queue_messages_redelivered_total{queue="work"} 1' in lines
    assert "# TYPE litemq_queue_messages_acked_total counter" in lines


def test_messages_taken_with_auto_ack_count_as_delivered_as_rabbitmq_counts_them(conn: litemq.Connection,
                                                                                  app: Any) -> None:
    # RabbitMQ's deliver_no_ack and get_no_ack: in the delivery rates, never in the ack rate.
    conn.declare_queue("work")
    conn.declare_queue("empty")
    for n in range(6):
        conn.publish("", "work", f"{n}")
    held = conn.get("work")
    assert held is not None
    held.nack(requeue=True)  # delivered once: the next take is a redelivery
    assert conn.get("work", auto_ack=True) is not None
    assert conn.get("empty", auto_ack=True) is None  # nothing taken, nothing counted
    channel = conn.channel()
    consumer = channel.consume("work", auto_ack=True)
    taken = [consumer.get(timeout=WAIT) for _ in range(5)]
    assert [delivery.body for delivery in taken if delivery is not None] == [b"1", b"2", b"3", b"4", b"5"]
    queues = {q["name"]: q for q in call(app, "GET", "/api/queues").json()}
    assert queues["work"]["totals"] == {"published": 6, "delivered": 7, "redelivered": 1, "acked": 0}
    assert queues["empty"]["totals"] == {"published": 0, "delivered": 0, "redelivered": 0, "acked": 0}
    lines = call(app, "GET", "/metrics").text.splitlines()
    assert 'litemq_queue_messages_delivered_total{queue="work"} 7' in lines
    assert 'litemq_queue_messages_acked_total{queue="work"} 0' in lines


def test_a_purge_and_expiry_count_as_no_delivery(conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue("purged")
    conn.declare_queue("short", arguments={"x-message-ttl": 50})
    for n in range(3):
        conn.publish("", "purged", f"{n}")
        conn.publish("", "short", f"{n}")
    assert conn.purge_queue("purged") == 3
    time.sleep(0.2)  # past their TTL: the get finds them expired and drops them
    assert conn.get("short") is None
    queues = {q["name"]: q for q in call(app, "GET", "/api/queues").json()}
    assert queues["purged"]["totals"] == {"published": 3, "delivered": 0, "redelivered": 0, "acked": 0}
    assert queues["short"]["totals"] == {"published": 3, "delivered": 0, "redelivered": 0, "acked": 0}


def test_route_is_a_dry_run(conn: litemq.Connection, app: Any) -> None:
    conn.declare_exchange("events", "topic")
    for queue, key in (("orders", "order.*"), ("all", "#")):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "events", key)
    routed = call(app, "GET", "/api/route", {"exchange": "events", "routing_key": "order.new"}).json()
    assert sorted(routed["queues"]) == ["all", "orders"]
    assert call(app, "GET", "/api/route", {"exchange": "events", "routing_key": "user.new"}).json()["queues"] == \
        ["all"]
    assert call(app, "GET", "/api/route", {"exchange": "nope", "routing_key": "x"}).status == 404
    assert conn.declare_queue("orders", passive=True).message_count == 0


def test_on_postgresql_the_page_keeps_one_session_and_opens_another_when_it_is_ended(postgresql_url: str) -> None:
    import psycopg

    conn = litemq.connect(postgresql_url)
    conn.declare_queue("work")
    app = management_app(postgresql_url)
    try:
        assert call(app, "GET", "/api/queues").status == 200
        session = app.source._session
        assert call(app, "GET", "/api/overview").status == 200 and app.source._session is session  # kept
        with psycopg.connect(POSTGRESQL_SERVER, autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(%s)", (session._db.info.backend_pid,))
        reply = call(app, "GET", "/api/queues")
        assert reply.status == 200 and [q["name"] for q in reply.json()] == ["work"]
        assert app.source._session is not session
    finally:
        app.source.close()
        conn.close()


def test_on_postgresql_the_pages_session_plans_by_the_indexes_without_parallel_workers(postgresql_url: str) -> None:
    # On a table not yet analyzed, PostgreSQL estimated 800,000 leased or delayed rows where there were 1,000 or
    # none, and started parallel workers to walk their indexes: 15 to 45 ms a statement, against 0.3 ms.
    conn = litemq.connect(postgresql_url)
    conn.declare_queue("work")
    app = management_app(postgresql_url)
    try:
        assert call(app, "GET", "/api/queues").status == 200
        settings = app.source.read(lambda store: [store.value(f"SHOW {name}") for name in
                                                  ("max_parallel_workers_per_gather", "enable_seqscan", "jit")])
        assert settings == ["0", "off", "off"]
    finally:
        app.source.close()
        conn.close()


def test_a_missing_queue_is_404(app: Any, conn: litemq.Connection) -> None:
    reply = call(app, "GET", "/api/queue", {"name": "nope"})
    assert reply.status == 404 and "nope" in reply.json()["error"]


# --- /metrics

def test_metrics_are_prometheus_text_with_names_escaped(conn: litemq.Connection, app: Any) -> None:
    odd = 'a"b\\c\n' + SCRIPT_NAME
    conn.declare_queue(odd)
    conn.declare_queue("jobs")
    for _ in range(3):
        conn.publish("", "jobs", "x")
    conn.publish("", odd, "y")
    assert conn.get("jobs") is not None
    reply = call(app, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = reply.text.splitlines()
    assert 'litemq_queue_messages_ready{queue="jobs"} 2' in lines
    assert 'litemq_queue_messages_unacked{queue="jobs"} 1' in lines
    assert 'litemq_queue_messages{queue="jobs"} 3' in lines
    assert 'litemq_queue_consumers{queue="jobs"} 0' in lines
    assert "litemq_queues 2" in lines and "litemq_connections 1" in lines
    escaped = 'a\\"b\\\\c\\n' + SCRIPT_NAME
    assert f'litemq_queue_messages_ready{{queue="{escaped}"}} 1' in lines
    # Every line is a comment or NAME{labels} VALUE, and every metric has its HELP and TYPE.
    sample = re.compile(r'^[a-z_]+(\{queue="([^"\\\n]|\\.)*"\})? -?[0-9.e+]+$')
    assert all(line.startswith("# ") or sample.match(line) for line in lines), lines
    names = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    assert all(f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}" in lines for name in names)


# --- actions

def test_actions_publish_get_move_purge_delete(conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue("work")
    conn.declare_queue("dead")
    csrf = csrf_of(app)

    def post(path: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
        reply = call(app, "POST", path, query, json_body=body, headers=csrf)
        assert reply.status == 200, reply.text
        return reply.json()

    assert post("/api/publish", {}, {"exchange": "", "routing_key": "dead", "body": "d1",
                                     "headers": {"k": "v"}, "content_type": "text/plain"}) == {"routed": 1}
    post("/api/publish", {}, {"exchange": "", "routing_key": "dead", "body": "d2"})
    got = post("/api/queue/get", {"name": "dead"}, {"count": 1, "ackmode": "requeue"})
    assert [(m["body"], m["properties"]) for m in got["messages"]] == \
        [("d1", {"content_type": "text/plain", "headers": {"k": "v"}})]
    assert conn.declare_queue("dead", passive=True).message_count == 2  # requeued
    assert post("/api/queue/move", {"name": "dead"}, {"destination": "work"}) == {"moved": 2}
    assert [conn.get("work", auto_ack=True).body for _ in range(2)] == [b"d1", b"d2"]  # type: ignore[union-attr]
    post("/api/publish", {}, {"exchange": "", "routing_key": "work", "body": "w"})
    got = post("/api/queue/get", {"name": "work"}, {"count": 5, "ackmode": "ack"})
    assert [m["body"] for m in got["messages"]] == ["w"]
    assert conn.declare_queue("work", passive=True).message_count == 0  # acked: gone
    for _ in range(3):
        post("/api/publish", {}, {"exchange": "", "routing_key": "work", "body": "p"})
    assert post("/api/queue/purge", {"name": "work"}, {}) == {"purged": 3}
    assert post("/api/queue/delete", {"name": "work"}, {}) == {"deleted": 0}
    assert conn.route("", "work") == []


def test_a_form_posted_without_javascript_gets_a_page_and_needs_its_confirmation(
        conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue("work")
    conn.publish("", "work", "x")
    unconfirmed = call(app, "POST", "/api/queue/purge", {"name": "work"}, form={"csrf": app.csrf})
    assert unconfirmed.status == 400 and conn.declare_queue("work", passive=True).message_count == 1
    assert unconfirmed.headers["Content-Type"].startswith("text/html") and "tick the box" in unconfirmed.text
    done = call(app, "POST", "/api/queue/purge", {"name": "work"}, form={"csrf": app.csrf, "confirm": "yes"})
    assert done.status == 200 and "Purged 1 message(s)." in done.text
    assert conn.declare_queue("work", passive=True).message_count == 0


def test_an_action_without_the_csrf_token_or_from_another_site_is_refused(conn: litemq.Connection,
                                                                          app: Any) -> None:
    conn.declare_queue("work")
    conn.publish("", "work", "x")
    for headers in ({}, {"X-CSRF-Token": "guess"}, {**csrf_of(app), "Origin": "http://evil.example"}):
        reply = call(app, "POST", "/api/queue/purge", {"name": "work"}, json_body={}, headers=headers)
        assert reply.status == 403, headers
    assert call(app, "GET", "/api/queue/purge", {"name": "work"}).status == 404  # a GET is never an action
    assert conn.declare_queue("work", passive=True).message_count == 1


def test_read_only_serves_no_action_and_shows_no_form(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("work")
    conn.publish("", "work", "x")
    app = management_app(db_path, read_only=True)
    for path in ("/api/publish", "/api/queue/get", "/api/queue/move", "/api/queue/purge", "/api/queue/delete"):
        reply = call(app, "POST", path, {"name": "work"}, json_body={"destination": "x"}, headers=csrf_of(app))
        assert reply.status == 403 and "read-only" in reply.json()["error"]
    page = call(app, "GET", "/queue", {"name": "work"}).text
    assert 'method="post"' not in page and "read-only" in page
    assert conn.declare_queue("work", passive=True).message_count == 1


def test_a_token_is_asked_of_every_request(db_path: str, conn: litemq.Connection) -> None:
    app = management_app(db_path, token="s3cret")
    assert call(app, "GET", "/api/overview").status == 401
    assert call(app, "GET", "/metrics", headers={"Authorization": "Bearer wrong"}).status == 401
    assert call(app, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"}).status == 200
    basic = base64.b64encode(b"anyone:s3cret").decode()
    reply = call(app, "GET", "/", headers={"Authorization": f"Basic {basic}"})
    assert reply.status == 200
    assert call(app, "GET", "/").headers["WWW-Authenticate"].startswith("Basic")


def test_only_this_machines_names_are_answered_on_loopback(db_path: str, conn: litemq.Connection) -> None:
    app = management_app(db_path, allowed_hosts={"127.0.0.1", "localhost"})
    assert call(app, "GET", "/api/overview").status == 200
    assert call(app, "GET", "/api/overview", headers={"Host": "rebound.example:15672"}).status == 421


def test_everything_from_the_broker_is_escaped(conn: litemq.Connection, app: Any) -> None:
    conn.declare_queue(SCRIPT_NAME)
    conn.declare_exchange(SCRIPT_NAME, "direct")
    conn.bind_queue(SCRIPT_NAME, SCRIPT_NAME, SCRIPT_NAME)
    conn.publish(SCRIPT_NAME, SCRIPT_NAME, SCRIPT_NAME, litemq.Properties(headers={SCRIPT_NAME: SCRIPT_NAME},
                                                                         content_type=SCRIPT_NAME))
    pages = [call(app, "GET", path, query) for path, query in
             (("/", {}), ("/queues", {}), ("/queue", {"name": SCRIPT_NAME}), ("/exchanges", {}),
              ("/exchanges", {"exchange": SCRIPT_NAME, "routing_key": SCRIPT_NAME, "route": "1"}),
              ("/connections", {}), ("/queue", {"name": SCRIPT_NAME + "missing"}))]
    for reply in pages:
        assert "<script>alert" not in reply.text
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in pages[2].text
    assert pages[2].text.count("&lt;script&gt;") >= 5  # name, binding, body, header, content type
    assert pages[-1].status == 404
    # The JSON carries the name as data (the page's script puts it in with textContent).
    assert SCRIPT_NAME in [q["name"] for q in call(app, "GET", "/api/queues").json()]


def test_mounted_under_a_prefix_it_links_under_it(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("work")

    def rest(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the application"]

    both = mount("/litemq", management_app(db_path), rest)
    page = call(both, "GET", "/litemq/queues").text
    assert 'href="/litemq/queue?name=work"' in page and 'src="/litemq/static/app.js"' in page
    assert call(both, "GET", "/litemq/static/style.css").status == 200
    assert call(both, "GET", "/other").body == b"the application"


# --- rates, and the command as a process

def test_the_totals_live_in_the_broker_so_a_restarted_page_loses_none(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("work")
    for n in range(3):
        conn.publish("", "work", f"{n}")
    delivery = conn.get("work")
    assert delivery is not None
    delivery.ack()
    first = management_app(db_path)
    try:
        before = {q["name"]: q for q in call(first, "GET", "/api/queues").json()}["work"]["totals"]
    finally:
        first.rates.stop()
        first.source.close()
    assert before == {"published": 3, "delivered": 1, "redelivered": 0, "acked": 1}
    for n in range(2):  # while no page runs
        conn.publish("", "work", f"later {n}")
    second = management_app(db_path)
    try:
        second.rates.sample()
        for n in range(4):
            conn.publish("", "work", f"watched {n}")
        second.rates.sample()  # (by hand: no request has started its sampler)
        rates = second.rates.latest()["work"]
        older, newer = second.rates.samples()
        totals = {q["name"]: q for q in second.source.queues()}["work"]["totals"]
    finally:
        second.rates.stop()
        second.source.close()
    assert totals["published"] == 9
    assert rates["published"] == pytest.approx(4 / (newer.at - older.at))


def test_depths_and_rates_move_while_a_producer_runs(db_path: str, conn: litemq.Connection, app: Any,
                                                        processes: Any, tmp_path: Path) -> None:
    conn.declare_queue("stream", durable=True)
    processes.start(publish_steadily, db_path, "stream", 200, str(tmp_path))
    _ready_file(tmp_path, "producer")
    app.rates.start()

    def grown() -> Any:
        found = call(app, "GET", "/api/queue", {"name": "stream"}).json()
        series = found["series"]["ready"]
        rates = found["rates"] or {}
        return found if len(series) >= 3 and series[-1] > series[0] and (rates.get("net") or 0) > 0 \
            and (rates.get("published") or 0) > 0 else None

    found = wait_until(grown, WAIT, "the sampled depth to grow with positive net and publish rates")
    assert found["series"]["times"] == sorted(found["series"]["times"])
    assert found["series"]["published"][0] is None and found["series"]["published"][-1] > 0
    assert found["rates"]["delivered"] == 0 and found["totals"]["delivered"] == 0
    assert call(app, "GET", "/api/overview").json()["series"]["ready"][-1] > 0


def test_the_command_serves_the_page_and_refuses_another_address_without_a_token(
        db_path: str, conn: litemq.Connection, popen: list[subprocess.Popen], subprocess_env: dict[str, str]
        ) -> None:
    conn.declare_queue("work")
    conn.publish("", "work", "x")
    refused = subprocess.run([sys.executable, "-m", "litemq", "--db", db_path, "web", "--host", "0.0.0.0",
                              "--port", "0"], env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--token" in refused.stderr
    base = start_web(popen, subprocess_env, db_path, "--read-only")
    with urllib.request.urlopen(base + "/api/queues", timeout=10) as reply:
        assert [(q["name"], q["ready"]) for q in json.load(reply)] == [("work", 1)]
    with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
        assert 'litemq_queue_messages_ready{queue="work"} 1' in reply.read().decode()
    request = urllib.request.Request(base + "/api/queue/purge?name=work", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused_action:
        urllib.request.urlopen(request, timeout=10)
    assert refused_action.value.code == 403
    assert conn.declare_queue("work", passive=True).message_count == 1


def test_the_command_on_another_address_asks_for_its_token(
        db_path: str, conn: litemq.Connection, popen: list[subprocess.Popen], subprocess_env: dict[str, str]
        ) -> None:
    conn.declare_queue("work")
    base = start_web(popen, dict(subprocess_env, LITEMQ_WEB_TOKEN="s3cret"), db_path, "--host", "0.0.0.0")
    base = base.replace("0.0.0.0", "127.0.0.1")
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(base + "/api/queues", timeout=10)
    assert unauthorized.value.code == 401
    request = urllib.request.Request(base + "/api/queues", headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert [q["name"] for q in json.load(reply)] == ["work"]
