"""The schema, defined once with SQLAlchemy Core. Alembic revisions build it; the drift test compares them.

Imported only by migrations, tools and tests: the hot path runs on the stdlib driver and never imports SQLAlchemy.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Float, Index, Integer, LargeBinary, MetaData,
                        PrimaryKeyConstraint, Table, Text, UniqueConstraint, text)

from . import VERSION_TABLE as VERSION_TABLE

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

exchanges = Table(
    "litemq_exchanges", metadata,
    Column("name", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("durable", Boolean, nullable=False),
    Column("auto_delete", Boolean, nullable=False),
    Column("internal", Boolean, nullable=False),
    Column("arguments", Text, nullable=True),  # JSON object, NULL when none
    Column("created_at", Float, nullable=False),
)

# ready_count and ready_bytes: the queue's ready messages (no lease, not delayed) and their body bytes, kept by
# triggers on litemq_messages and litemq_bodies (migration 0007), so writes by hand with plain SQL count too.
queues = Table(
    "litemq_queues", metadata,
    Column("name", Text, primary_key=True),
    Column("durable", Boolean, nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("auto_delete", Boolean, nullable=False),
    Column("arguments", Text, nullable=True),
    Column("owner_connection", Text, nullable=True),  # the connection an exclusive queue belongs to
    Column("ready_count", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Float, nullable=False),
    Column("ready_bytes", Integer, nullable=False, server_default=text("0")),  # body bytes of ready messages
    Column("expires_at", Float, nullable=True),  # x-expires: when the unused queue is deleted
    # Cumulative counts for rates (migration 0010), kept by the same triggers as ready_count.
    *[Column(name, Integer().with_variant(BigInteger(), "postgresql"), nullable=False, server_default=text("0"))
      for name in ("published_total", "delivered_total", "redelivered_total", "acked_total")],
    Index("ix_litemq_queues_expires_at", "expires_at", sqlite_where=text("expires_at IS NOT NULL"),
          postgresql_where=text("expires_at IS NOT NULL")),
)

bindings = Table(
    "litemq_bindings", metadata,
    Column("id", Integer, primary_key=True),
    Column("exchange", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("destination_kind", Text, nullable=False),  # 'queue' or 'exchange'
    Column("routing_key", Text, nullable=False),
    Column("arguments", Text, nullable=False, server_default=text("'{}'")),
    UniqueConstraint("exchange", "destination_kind", "destination", "routing_key", "arguments"),
    Index(None, "destination_kind", "destination"),
)

messages = Table(
    "litemq_messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("queue", Text, nullable=False),
    Column("exchange", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("body", LargeBinary, nullable=True),  # NULL when the body is in litemq_bodies
    Column("properties", Text, nullable=True),  # JSON object of the set properties, NULL when none
    Column("published_at", Float, nullable=False),
    Column("delivery_count", Integer, nullable=False, server_default=text("0")),
    Column("lease_owner", Text, nullable=True),
    Column("lease_token", Integer, nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("priority", Integer, nullable=False, server_default=text("0")),  # as the queue counts it: 0 to max
    Column("expires_at", Float, nullable=True),  # TTL: never delivered after this
    Column("visible_at", Float, nullable=True),  # delayed: not in the queue until then
    # Ready messages in their own partial index, in delivery order, so a claim never walks leased or delayed rows.
    Index("ix_litemq_messages_ready", "queue", text("priority DESC"), "id",
          sqlite_where=text("lease_token IS NULL AND visible_at IS NULL"),
          postgresql_where=text("lease_token IS NULL AND visible_at IS NULL")),
    Index("ix_litemq_messages_expiry", "expires_at",
          sqlite_where=text("expires_at IS NOT NULL AND lease_token IS NULL"),
          postgresql_where=text("expires_at IS NOT NULL AND lease_token IS NULL")),
    Index("ix_litemq_messages_delayed", "visible_at", sqlite_where=text("visible_at IS NOT NULL"),
          postgresql_where=text("visible_at IS NOT NULL")),
    # Leased messages only; also walked whole to find an owner's leases (closing a channel, a dead connection).
    Index("ix_litemq_messages_lease_expiry", "queue", "lease_expires_at",
          sqlite_where=text("lease_token IS NOT NULL"), postgresql_where=text("lease_token IS NOT NULL")),
)

# Bodies over OUT_OF_ROW_BYTES, under their message's id (a trigger deletes one with its message: 0006, and 0007's
# delete trigger, which counts the message out first).
# A claim or a requeue resizes its message row (the lease), and SQLite then rewrites the row whole, overflow and all.
bodies = Table(
    "litemq_bodies", metadata,
    Column("id", Integer, primary_key=True),
    Column("body", LargeBinary, nullable=False),
)

connections = Table(
    "litemq_connections", metadata,
    Column("id", Text, primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", Text, nullable=False),
    Column("started_at", Float, nullable=False),
)

consumers = Table(
    "litemq_consumers", metadata,
    Column("connection_id", Text, nullable=False),
    Column("channel", Integer, nullable=False),
    Column("consumer_tag", Text, nullable=False),
    Column("queue", Text, nullable=False),
    Column("prefetch_count", Integer, nullable=False),
    Column("auto_ack", Boolean, nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    # A queue delivers to its highest-priority consumers that have room (migration 0008).
    # 64-bit, as x-priority is (PostgreSQL's INTEGER is 32).
    Column("priority", Integer().with_variant(BigInteger(), "postgresql"), nullable=False, server_default=text("0")),
    Column("has_room", Boolean, nullable=False, server_default=text("1")),
    PrimaryKeyConstraint("connection_id", "channel", "consumer_tag"),
    Index(None, "queue"),
    # Consumers of other than the default priority only: a claim by a priority-0 consumer, the common case, ranks
    # itself by this (usually empty) index alone.
    Index("ix_litemq_consumers_ranked", "queue", "priority", "has_room", sqlite_where=text("priority != 0"),
          postgresql_where=text("priority != 0")),
)

# One row: raised by triggers (migration 0004) on every change to exchanges and bindings; cached routes check it.
routing = Table(
    "litemq_routing", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("id = 1", name="one_row"),
)
