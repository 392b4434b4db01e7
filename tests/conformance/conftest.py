"""Fixtures of the differential conformance suite: each scenario runs against RabbitMQ (real pika) and against
litemq (litemq.pika on a temp file, and in a PostgreSQL schema). See scenario_tools.py for how observations are
compared."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pytest

pytest.register_assert_rewrite("conformance.scenario_tools")

from engines import make_broker, new_broker  # noqa: E402

from . import scenario_tools  # noqa: E402
from .scenario_tools import Backend  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """RabbitMQ, or litemq on one engine (a broker of the test's own: see tests/engines.py)."""
    name, engine = request.param
    if name == "rabbitmq":
        from services import require_rabbitmq

        require_rabbitmq()
    elif scenario_tools.RECORDING:
        pytest.skip("recording RabbitMQ's observations (LITEMQ_RECORD_CONFORMANCE=1)")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LITEMQ_URL", None)
    key = f"{Path(request.node.path).stem}::{request.node.originalname}"
    with contextlib.ExitStack() as broker:
        url = broker.enter_context(new_broker(engine, tmp_path)) if engine else None
        if url:
            make_broker(url)  # every scenario connects at once: none is about creating a broker
        run = Backend(name, key, url, env)
        try:
            yield run
        finally:
            run.clean_up()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if scenario_tools.RECORDING:
        scenario_tools.write_recorded()
