"""The systems of ``python -m bench --engine postgresql``: the psycopg floor (bench/floor_postgres.py), litemq on
PostgreSQL (native API and litemq.pika), and the PostgreSQL job queues pgqueuer and procrastinate
(bench/peers_postgres.py), behind the client interface of bench/systems.py.

Every store is a fresh schema on the server (``--pg-url``), named after the run, created by ``new_store`` and
dropped with everything in it by ``drop_store``; the command drops any of its run's schemas a killed row left."""

from __future__ import annotations

import functools
import sys
import uuid
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .systems import QUEUE, Client, FloorClient, LitemqClient, PikaClient, System, _version

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CROSS_PROCESS = ("e", "e-lat", "i-1", "i-4")
"""Workloads with a consumer waiting in another process: only there does the floor's publish notify."""


def schema_url(url: str, schema: str) -> str:
    """``url`` with litemq's ``schema=`` query parameter set."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def server_address(url: str) -> str:
    """host:port of ``url``, without its user or password (for the machine line)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def shown_url(url: str) -> str:
    """``url`` without its password, to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def new_schema_name(options: dict[str, Any]) -> str:
    return f"{options['pg_prefix']}_{uuid.uuid4().hex[:8]}"


def drop_schemas(url: str, names: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def schemas_named(url: str, prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)).fetchall()
    return [row[0] for row in rows]


@functools.lru_cache(maxsize=None)
def server_check(url: str) -> tuple[Optional[str], str]:
    """(None, the server's version) when ``url`` accepts a connection within 3 s; else (why not, "")."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed (pip install 'psycopg[binary]')", ""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        return f"PostgreSQL not reachable at {server_address(url)}: {lines[0].rsplit('failed: ', 1)[-1]}", ""
    return None, version.split()[0]


class PostgresSystem(System):
    """A system whose store is a schema of its own on the server."""

    files = False

    def available(self, options: dict[str, Any]) -> Optional[str]:
        return server_check(options["pg_url"])[0]

    def filled(self, cfg: dict[str, Any]) -> None:
        """ANALYZE the schema's tables, as autovacuum soon would: a row must not run on plans made before its
        queue was filled (procrastinate's fetch on 20,000 queued jobs runs 6x slower without)."""
        import psycopg

        with psycopg.connect(cfg["pg_url"], autocommit=True) as conn:
            tables = conn.execute("SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
                                  "WHERE schemaname = %s", (cfg["schema"],)).fetchall()
            for (table,) in tables:
                conn.execute(f"ANALYZE {table}")

    def server_sessions(self, cfg: dict[str, Any]) -> list[int]:
        """The server processes of this process's sessions: those whose client port is one of its sockets'."""
        import psycopg

        from .measure import tcp_ports

        with psycopg.connect(cfg["pg_url"], autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) "
                                "AND pid <> pg_backend_pid()", (tcp_ports(),)).fetchall()
        return [row[0] for row in rows]

    def drop_store(self, cfg: dict[str, Any]) -> None:
        try:
            drop_schemas(cfg["pg_url"], [cfg["schema"]])
        except Exception as exc:  # noqa: BLE001 - the row's own result or error matters more
            print(f"bench: could not drop schema {cfg['schema']} ({' '.join(str(exc).split())}); the run drops "
                  f"its schemas at its end", file=sys.stderr)


# =============================================================================================================
# The floor: raw psycopg
# =============================================================================================================

class PgFloorClient(FloorClient):
    """The SQLite floor's client on the psycopg floor, whose verbs are the same."""

    def __init__(self, cfg: dict[str, Any], batch: int) -> None:
        from . import floor_postgres

        self.floor = floor_postgres.PgFloor(cfg["pg_url"], cfg["schema"], batch,  # type: ignore[assignment]
                                            notify=cfg.get("notify", False))
        self.receiver_class = floor_postgres.PgFloorReceiver  # type: ignore[assignment]


class PgFloor(PostgresSystem):
    family = "floor"

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.key = f"floor-{batch}"
        if batch == 1:
            self.label = "psycopg floor, 1/txn"
            self.not_applicable = {"b": "one per transaction is row a"}
            self.notes = {"d": "claims 100 per statement, 1 DELETE per txn", "e": "INSERT + pg_notify; LISTEN",
                          "e-lat": "INSERT + pg_notify; LISTEN", "i-1": "LISTEN", "i-4": "LISTEN", "l": "LISTEN"}
        else:
            one = "one at a time: see the 1/txn floor"
            self.label = "psycopg floor, 100/txn"
            self.not_applicable = {"a": "100 per transaction is row b", "c": one, "e-lat": "a batch holds messages",
                                   "h-shallow": one, "h-deep": one, "i-1": one, "i-4": one, "j": one,
                                   "k-10KB": one, "k-1MB": one, "l": one}
            self.notes = {"b": "INSERT ... unnest(100 bodies)", "d": "claims 100, deletes 100 per txn",
                          "e": "commits per 100 both sides; LISTEN", "f": "100 messages per txn",
                          "g": "100 messages per txn"}

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        from . import floor_postgres

        cfg = {"pg_url": options["pg_url"], "schema": new_schema_name(options),
               "notify": options.get("workload") in CROSS_PROCESS}
        floor_postgres.create(cfg["pg_url"], cfg["schema"])
        return cfg

    def client(self, cfg: dict[str, Any]) -> Client:
        return PgFloorClient(cfg, self.batch)

    def versions(self) -> dict[str, str]:
        return {"psycopg": _version("psycopg")}

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import psycopg\n"
                "cfg = json.loads(sys.argv[1])\n"
                "db = psycopg.connect(cfg['pg_url'], autocommit=True, options='-c search_path=' + cfg['schema'])\n"
                "db.execute('INSERT INTO messages (queue, body) VALUES (%s, %s)', ('bench', sys.argv[2].encode()))\n"
                "db.close()\n")


# =============================================================================================================
# litemq on PostgreSQL: litemq.connect("postgresql://...?schema=...")
# =============================================================================================================

class PgLitemq(PostgresSystem):
    key = "litemq-native"
    label = "litemq"
    family = "litemq"
    notes = {"b": "publish_many"}

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        import litemq

        schema = new_schema_name(options)
        cfg = {"pg_url": options["pg_url"], "schema": schema, "url": schema_url(options["pg_url"], schema)}
        try:
            with litemq.connect(cfg["url"]) as conn:  # the first open creates the schema and its tables
                conn.declare_queue(QUEUE, durable=True)
        except BaseException:
            drop_schemas(cfg["pg_url"], [schema])
            raise
        return cfg

    def client(self, cfg: dict[str, Any]) -> Client:
        return LitemqClient(cfg, synchronous=None)  # durability is the server's (synchronous_commit)

    def versions(self) -> dict[str, str]:
        import litemq

        return {"litemq": litemq.__version__, "psycopg": _version("psycopg")}

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import litemq\n"
                "cfg = json.loads(sys.argv[1])\n"
                "conn = litemq.connect(cfg['url'])\n"
                "conn.publish('', 'bench', sys.argv[2].encode())\n"
                "conn.close()\n")


class PgLitemqPika(PgLitemq):
    key = "litemq-pika"
    label = "litemq.pika"
    notes = {"b": "100 x basic_publish (no tx)"}

    def client(self, cfg: dict[str, Any]) -> Client:
        from litemq import pika

        return PikaClient(pika, pika.URLParameters(cfg["url"]), False, "", in_flight=False)

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "from litemq import pika\n"
                "cfg = json.loads(sys.argv[1])\n"
                "connection = pika.BlockingConnection(pika.URLParameters(cfg['url']))\n"
                "channel = connection.channel()\n"
                "channel.basic_publish('', 'bench', sys.argv[2].encode(), pika.BasicProperties(delivery_mode=2))\n"
                "connection.close()\n")


def postgres_systems() -> list[System]:
    """In the table's order."""
    from .peers_postgres import PgQueuer, Procrastinate

    return [PgFloor(1), PgFloor(100), PgLitemq(), PgLitemqPika(), PgQueuer(), Procrastinate()]
