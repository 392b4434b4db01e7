"""Alembic environment for litemq. litemq passes its connection (already inside BEGIN IMMEDIATE) in
``config.attributes``; maintainers running ``alembic`` from the checkout get one from alembic.ini's URL."""

from alembic import context
from sqlalchemy import create_engine

from litemq.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")


def run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite:///litemq.db")
    with engine.begin() as conn:
        run(conn)
