"""Access to the external services some tests need: a real RabbitMQ to compare litemq against, and the local
PostgreSQL server that litemq's PostgreSQL store runs on.

A test that needs RabbitMQ calls ``require_rabbitmq()`` or asks for the ``rabbitmq_channel`` fixture
(``from services import rabbitmq_channel`` in the test module); one that needs PostgreSQL calls
``require_postgresql()`` (the ``postgresql`` variant of the engine fixture does). When the service cannot be
reached the test is skipped, unless ``LITEMQ_REQUIRE_SERVICES=1`` is set (as in CI), in which case it fails instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Iterator

import pytest

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_USER = "guest"
RABBITMQ_PASSWORD = "guest"
CONNECT_TIMEOUT = 1.0

POSTGRESQL_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The local server (trust auth, database ``test``); each test gets a schema of its own in it."""


def _unavailable(reason: str) -> None:
    if os.environ.get("LITEMQ_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LITEMQ_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_rabbitmq() -> None:
    """Return when RabbitMQ accepts a TCP connection within 1 s; otherwise skip (or fail, when required)."""
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=CONNECT_TIMEOUT):
            return
    except OSError as exc:
        reason = f"RabbitMQ not reachable at {RABBITMQ_HOST}:{RABBITMQ_PORT}: {exc or type(exc).__name__}"
    _unavailable(reason)  # outside the except block, so the report shows no chained traceback


_postgresql_unavailable: list[str] = []  # the reason, found once per session


def require_postgresql() -> None:
    """Return when psycopg is installed and the local PostgreSQL answers within 1 s; otherwise skip (or fail, when
    required). Looked at once per session: a server that is down stays down for the run."""
    if not _postgresql_unavailable:
        _postgresql_unavailable.append(_postgresql_problem())
    if _postgresql_unavailable[0]:
        _unavailable(_postgresql_unavailable[0])


def _postgresql_problem() -> str:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'litemq[postgresql]')"
    try:
        psycopg.connect(POSTGRESQL_URL, connect_timeout=int(CONNECT_TIMEOUT) or 1).close()
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {POSTGRESQL_URL}: {first_line}"
    return ""


def unique_name(prefix: str) -> str:
    """A name no other test run uses, for exchanges and queues declared on the shared RabbitMQ."""
    return f"litemq-test-{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def rabbitmq_channel() -> Iterator[Any]:
    """A pika ``BlockingChannel`` on a fresh connection to the real RabbitMQ, closed after the test.

    Exclusive queues declared on it disappear with the connection; exchanges must be deleted by the test.
    """
    require_rabbitmq()
    import pika  # a test dependency; imported here so modules that never touch RabbitMQ do not need it
    parameters = pika.ConnectionParameters(
        host=RABBITMQ_HOST,
        port=RABBITMQ_PORT,
        credentials=pika.PlainCredentials(RABBITMQ_USER, RABBITMQ_PASSWORD),
        socket_timeout=5,
        blocked_connection_timeout=5,
        connection_attempts=1,
    )
    connection = None
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        reason = f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} refused an AMQP connection: {exc!r}"
    if connection is None:
        _unavailable(reason)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()
