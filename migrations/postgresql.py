"""What the revisions do differently on PostgreSQL, in one place: each revision that must (triggers, views, types)
loads this file beside it and asks ``on_postgresql()``.

On PostgreSQL litemq's tables live in a schema of their own, which is first on the migration's ``search_path``.
Views bind their tables when they are made, but a trigger function finds tables by the ``search_path`` of whoever
writes (a person at psql, say): so the functions name the schema explicitly.
"""
import sqlalchemy as sa
from alembic import op


def on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def schema() -> str:
    """The migration's schema, quoted as an identifier."""
    name = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + name.replace('"', '""') + '"'


def big_integer() -> sa.types.TypeEngine:
    """INTEGER on SQLite (a rowid alias stays one), BIGINT on PostgreSQL (ids and lease tokens reach past 2**31)."""
    return sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def create_function(name: str, body: str, returns: str = "trigger", arguments: str = "", replace: bool = False) -> None:
    """A PL/pgSQL function; ``{schema}`` in ``body`` becomes the schema's quoted name. ``replace``: a new body for
    one that exists (its triggers keep calling it)."""
    op.execute(f"CREATE {'OR REPLACE ' if replace else ''}FUNCTION {name}({arguments}) RETURNS {returns} LANGUAGE plpgsql AS $litemq$\n"
               f"{body.format(schema=schema())}\n$litemq$")


def drop_function(name: str, arguments: str = "") -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {name}({arguments})")
