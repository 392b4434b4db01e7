"""The routing version: a counter raised by every change to exchanges or bindings, so each connection can cache
routes and find out, with one read inside a publish, that they changed. Triggers raise it, so exchanges and
bindings changed with plain SQL (sqlite3 at the prompt) count too. On PostgreSQL one statement-level trigger per
table raises it once per statement.

Revision ID: 0004
Revises: 0003
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRIGGERS = {f"litemq_{table}_{event.lower()}_routing": (event, f"litemq_{table}")
            for table in ("exchanges", "bindings") for event in ("INSERT", "UPDATE", "DELETE")}
ROUTING_FUNCTION = "litemq_routing_changed"
POSTGRESQL_TRIGGERS = {f"litemq_{table}_routing": f"litemq_{table}" for table in ("exchanges", "bindings")}


def upgrade() -> None:
    op.create_table("litemq_routing",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
                    sa.CheckConstraint("id = 1", name="one_row"),
                    sa.PrimaryKeyConstraint("id", name="pk_litemq_routing"))
    op.execute("INSERT INTO litemq_routing (id, version) VALUES (1, 0)")
    if postgresql.on_postgresql():
        postgresql.create_function(ROUTING_FUNCTION, "BEGIN\n    UPDATE {schema}.litemq_routing SET version = version + 1;"
                                                     "\n    RETURN NULL;\nEND;")
        for name, table in POSTGRESQL_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {ROUTING_FUNCTION}()")
        return
    for name, (event, table) in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                   "BEGIN UPDATE litemq_routing SET version = version + 1; END")


def downgrade() -> None:
    if postgresql.on_postgresql():
        for name, table in POSTGRESQL_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        postgresql.drop_function(ROUTING_FUNCTION)
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("litemq_routing")
