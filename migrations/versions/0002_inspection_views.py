"""Inspection views for people: queue statistics, readable messages, connections with their consumers.

Views may compute "now" in SQL (litemq's own statements never do): they are for people at a terminal.
``body_text`` shows bodies that are plain ASCII text: SQL cannot check UTF-8, and a view that returned invalid
text would break every Python reader of it (``litemq peek`` decodes UTF-8 bodies).

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _iso(column: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {column}, 'unixepoch')"


VIEWS = {
    "litemq_queue_stats": f"""
        SELECT q.name AS queue,
               q.ready_count AS ready,
               (SELECT count(*) FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NOT NULL) AS unacked,
               q.ready_count + (SELECT count(*) FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NOT NULL) AS total,
               (SELECT count(*) FROM litemq_consumers c WHERE c.queue = q.name) AS consumers,
               {NOW} - (SELECT m.published_at FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NULL ORDER BY m.id LIMIT 1) AS oldest_ready_seconds,
               (SELECT coalesce(sum(length(m.body)), 0) FROM litemq_messages m WHERE m.queue = q.name) AS bytes,
               q.durable, q.exclusive, q.auto_delete, q.arguments
          FROM litemq_queues q""",
    "litemq_message_view": f"""
        SELECT m.id, m.queue,
               CASE WHEN m.lease_token IS NULL THEN 'ready' ELSE 'unacked' END AS state,
               m.exchange, m.routing_key,
               CASE WHEN instr(m.body, x'00') = 0
                     AND CAST(m.body AS TEXT) NOT GLOB '*[^' || char(9, 10, 13) || ' -~]*'
                    THEN CAST(m.body AS TEXT) END AS body_text,
               length(m.body) AS body_bytes,
               m.properties,
               {_iso('m.published_at')} AS published_at,
               m.delivery_count,
               m.lease_owner,
               {_iso('m.lease_expires_at')} AS lease_expires_at
          FROM litemq_messages m""",
    "litemq_connection_view": f"""
        SELECT n.id AS connection_id, n.pid, n.host, {_iso('n.started_at')} AS started_at,
               (SELECT count(*) FROM litemq_messages m
                 WHERE m.lease_owner >= n.id || '/' AND m.lease_owner < n.id || '0'
                   AND m.lease_token IS NOT NULL) AS unacked,
               c.channel, c.consumer_tag, c.queue, c.prefetch_count, c.auto_ack, c.exclusive,
               {_iso('c.started_at')} AS consumer_started_at
          FROM litemq_connections n LEFT JOIN litemq_consumers c ON c.connection_id = n.id""",
}


def upgrade() -> None:
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
