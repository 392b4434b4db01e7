"""Inspection views for people: queue statistics, readable messages, connections with their consumers.

Views may compute "now" in SQL (litemq's own statements never do): they are for people at a terminal.
``body_text`` shows bodies that are UTF-8 text (checked in SQL up to UTF8_CHECK_LIMIT bytes unless plain ASCII).
On PostgreSQL the same views read the clock and format times in its own words, and a function tells text bodies.

Revision ID: 0002
Revises: 0001
"""
import importlib.util
from pathlib import Path

from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = "((julianday('now') - 2440587.5) * 86400.0)"
POSTGRESQL_NOW = "extract(epoch FROM clock_timestamp())::float8"


UTF8_CHECK_LIMIT = 4096
"""Bodies up to this size that are not plain ASCII are checked for UTF-8 byte by byte (a recursive query costs
about 1.5 ms per KiB); larger ones show no text."""

# SQLite has no UTF-8 check, and a view returning invalid text would break every Python reader of it: walk the
# body a character at a time, checking each lead byte and its continuation bytes (RFC 3629's table).
_B1, _B2, _B3, _B4 = (f"substr(m.body, i + {k}, 1)" for k in range(4))
_WIDTH = (f"CASE WHEN {_B1} < x'80' THEN 1 WHEN {_B1} BETWEEN x'C2' AND x'DF' THEN 2 "
          f"WHEN {_B1} BETWEEN x'E0' AND x'EF' THEN 3 WHEN {_B1} BETWEEN x'F0' AND x'F4' THEN 4 ELSE 0 END")
_LOW2 = f"CASE {_B1} WHEN x'E0' THEN x'A0' WHEN x'F0' THEN x'90' ELSE x'80' END"
_HIGH2 = f"CASE {_B1} WHEN x'ED' THEN x'9F' WHEN x'F4' THEN x'8F' ELSE x'BF' END"
_CHAR_OK = (f"CASE WHEN ({_WIDTH}) = 0 OR i + ({_WIDTH}) - 1 > length(m.body) THEN 0 "
            f"WHEN ({_WIDTH}) >= 2 AND NOT ({_B2} BETWEEN ({_LOW2}) AND ({_HIGH2})) THEN 0 "
            f"WHEN ({_WIDTH}) >= 3 AND NOT ({_B3} BETWEEN x'80' AND x'BF') THEN 0 "
            f"WHEN ({_WIDTH}) = 4 AND NOT ({_B4} BETWEEN x'80' AND x'BF') THEN 0 ELSE 1 END")
VALID_UTF8 = (f"(WITH RECURSIVE walk(i, ok) AS (SELECT 1, 1 UNION ALL "
              f"SELECT i + ({_WIDTH}), ({_CHAR_OK}) FROM walk WHERE ok = 1 AND i <= length(m.body)) "
              f"SELECT min(ok) FROM walk)")


def _iso(column: str, dialect: str = "sqlite") -> str:
    if dialect == "postgresql":
        return f"""to_char(to_timestamp({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {column}, 'unixepoch')"


_BODY_TEXT = f"""CASE WHEN instr(m.body, x'00') > 0 THEN NULL
                    WHEN CAST(m.body AS TEXT) NOT GLOB '*[^' || char(9, 10, 13) || ' -~]*' THEN CAST(m.body AS TEXT)
                    WHEN length(m.body) <= {UTF8_CHECK_LIMIT} AND {VALID_UTF8} = 1 THEN CAST(m.body AS TEXT)
               END"""
# PostgreSQL checks UTF-8 itself (convert_from raises on anything else): a function turns that into NULL.
BODY_TEXT_FUNCTION = "litemq_body_text"
BODY_TEXT_FUNCTION_BODY = """BEGIN
    IF body IS NULL OR position('\\x00'::bytea IN body) > 0 THEN
        RETURN NULL;
    END IF;
    RETURN convert_from(body, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN NULL;
END;"""


def views(dialect: str = "sqlite") -> dict:
    """The views of this revision in the dialect's SQL."""
    now = POSTGRESQL_NOW if dialect == "postgresql" else NOW
    body_text = f"{BODY_TEXT_FUNCTION}(m.body)" if dialect == "postgresql" else _BODY_TEXT
    return {
        "litemq_queue_stats": f"""
        SELECT q.name AS queue,
               q.ready_count AS ready,
               (SELECT count(*) FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NOT NULL) AS unacked,
               q.ready_count + (SELECT count(*) FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NOT NULL) AS total,
               (SELECT count(*) FROM litemq_consumers c WHERE c.queue = q.name) AS consumers,
               {now} - (SELECT m.published_at FROM litemq_messages m
                 WHERE m.queue = q.name AND m.lease_token IS NULL ORDER BY m.id LIMIT 1) AS oldest_ready_seconds,
               (SELECT coalesce(sum(length(m.body)), 0) FROM litemq_messages m WHERE m.queue = q.name) AS bytes,
               q.durable, q.exclusive, q.auto_delete, q.arguments
          FROM litemq_queues q""",
        "litemq_message_view": f"""
        SELECT m.id, m.queue,
               CASE WHEN m.lease_token IS NULL THEN 'ready' ELSE 'unacked' END AS state,
               m.exchange, m.routing_key,
               {body_text} AS body_text,
               length(m.body) AS body_bytes,
               m.properties,
               {_iso('m.published_at', dialect)} AS published_at,
               m.delivery_count,
               m.lease_owner,
               {_iso('m.lease_expires_at', dialect)} AS lease_expires_at
          FROM litemq_messages m""",
        "litemq_connection_view": f"""
        SELECT n.id AS connection_id, n.pid, n.host, {_iso('n.started_at', dialect)} AS started_at,
               (SELECT count(*) FROM litemq_messages m
                 WHERE m.lease_owner >= n.id || '/' AND m.lease_owner < n.id || '0'
                   AND m.lease_token IS NOT NULL) AS unacked,
               c.channel, c.consumer_tag, c.queue, c.prefetch_count, c.auto_ack, c.exclusive,
               {_iso('c.started_at', dialect)} AS consumer_started_at
          FROM litemq_connections n LEFT JOIN litemq_consumers c ON c.connection_id = n.id""",
    }


VIEWS = views()


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        postgresql.create_function(BODY_TEXT_FUNCTION, BODY_TEXT_FUNCTION_BODY, "text", "body bytea")
    for name, body in views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    if postgresql.on_postgresql():
        postgresql.drop_function(BODY_TEXT_FUNCTION, "bytea")
