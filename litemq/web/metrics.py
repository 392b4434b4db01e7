"""``/metrics`` in Prometheus's text format (version 0.0.4), named as RabbitMQ's Prometheus plugin names its
per-queue metrics (``rabbitmq_queue_messages_ready`` becomes ``litemq_queue_messages_ready``), so a Grafana
dashboard for RabbitMQ needs its prefix changed and little else. Every value is read from the store at the
scrape: the depths as gauges, the store's cumulative totals (migration 0010) as counters, which ``rate()`` turns
into messages per second (a queue deleted and declared again starts its counters at 0, as a restarted RabbitMQ
does)."""

from __future__ import annotations

from typing import Any, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PER_QUEUE = (
    ("litemq_queue_messages_ready", "ready", "Messages ready to be delivered."),
    ("litemq_queue_messages_unacked", "unacked", "Messages delivered and not yet acknowledged."),
    ("litemq_queue_messages_delayed", "delayed", "Messages waiting for their delay to pass."),
    ("litemq_queue_messages", "messages", "Messages in the queue: ready, unacked and delayed."),
    ("litemq_queue_messages_ready_bytes", "ready_bytes", "Body bytes of the ready messages."),
    ("litemq_queue_consumers", "consumers", "Consumers of the queue."),
)
COUNTERS = (
    ("litemq_queue_messages_published_total", "published", "Messages stored into the queue (moved in included)."),
    ("litemq_queue_messages_delivered_total", "delivered",
     "Messages delivered, by gets and to consumers, with or without an ack to come."),
    ("litemq_queue_messages_redelivered_total", "redelivered", "Deliveries of messages delivered before."),
    ("litemq_queue_messages_acked_total", "acked",
     "Delivered messages acked, or rejected without requeue (deliveries with auto-ack are never acked)."),
)


def label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def render(queues: list[dict[str, Any]], connections: int, consumers: int, sizes: dict[str, int]) -> str:
    lines: list[str] = []

    def gauge(name: str, text: str, samples: Iterable[tuple[str, int]], kind: str = "gauge") -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    labels = [f'{{queue="{label(q["name"])}"}}' for q in queues]  # once per queue, for every metric
    for name, key, text in PER_QUEUE:
        values = ([q["ready"] + q["unacked"] + q["delayed"] for q in queues] if key == "messages"
                  else [q[key] for q in queues])
        gauge(name, text, zip(labels, values))
    for name, key, text in COUNTERS:
        gauge(name, text, zip(labels, [q["totals"][key] for q in queues]), "counter")
    gauge("litemq_queues", "Queues.", [("", len(queues))])
    gauge("litemq_connections", "Open connections (registered; dead ones until they are reaped).",
          [("", connections)])
    gauge("litemq_consumers", "Consumers of all queues.", [("", consumers)])
    for key, value in sorted(sizes.items()):
        gauge(f"litemq_{key}", {"file_bytes": "Bytes of the database file.", "wal_bytes": "Bytes of its WAL.",
                                "schema_bytes": "Bytes of the schema's tables and indexes."}.get(key, key),
              [("", value)])
    return "\n".join(lines) + "\n"
