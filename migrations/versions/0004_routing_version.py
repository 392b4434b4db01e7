"""The routing version: a counter raised by every change to exchanges or bindings, so each connection can cache
routes and find out, with one read inside a publish, that they changed. Triggers raise it, so exchanges and
bindings changed with plain SQL (sqlite3 at the prompt) count too.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRIGGERS = {f"litemq_{table}_{event.lower()}_routing": (event, f"litemq_{table}")
            for table in ("exchanges", "bindings") for event in ("INSERT", "UPDATE", "DELETE")}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        raise NotImplementedError("the routing version triggers are written for SQLite")
    op.create_table("litemq_routing",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
                    sa.CheckConstraint("id = 1", name="one_row"),
                    sa.PrimaryKeyConstraint("id", name="pk_litemq_routing"))
    op.execute("INSERT INTO litemq_routing (id, version) VALUES (1, 0)")
    for name, (event, table) in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                   "BEGIN UPDATE litemq_routing SET version = version + 1; END")


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("litemq_routing")
