"""Alembic environment for litemq. litemq passes its connection (already inside BEGIN IMMEDIATE, or on PostgreSQL
inside a transaction holding the schema's migration lock with the schema first on its search_path) in
``config.attributes``; maintainers running ``alembic`` from the checkout get one from alembic.ini's URL."""

from alembic import context

from litemq.store.migrate import sqlite_engine
from litemq.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
options = context.config.attributes.get("options", {})  # version_table_schema on PostgreSQL


def run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE,
                      render_as_batch=True, **options)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    # alembic.ini names the file as litemq does (a path or sqlite:///path, never parsed as a URL).
    from litemq.connection import resolve_path

    engine = sqlite_engine(resolve_path(context.config.get_main_option("sqlalchemy.url") or "litemq.db"))
    with engine.begin() as conn:
        run(conn)
