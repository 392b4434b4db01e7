"""A handful of seeds of the random-sequence differential test (bench/differential.py): the same operations through
pika against RabbitMQ and through litemq.pika, every reply equal. ``python -m bench.differential --seeds 500`` runs
hundreds. RabbitMQ's replies for these seeds are recorded in rabbitmq_observations.json, so the litemq half runs
without RabbitMQ; with it, they are checked afresh (``LITEMQ_RECORD_CONFORMANCE=1`` records them)."""

from __future__ import annotations

import json
import socket

import pytest

from bench import differential
from engines import as_url

from . import scenario_tools

SEEDS = range(6)
STEPS = 40


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_sequence_of_operations_gets_rabbitmqs_replies_from_litemq(seed, tmp_path, db_path):
    script = differential.Script(seed, STEPS)
    key = f"test_differential::seed {seed} of {STEPS} operations"
    if _rabbitmq_reachable():
        rabbit = json.loads(json.dumps(differential.rabbitmq_trace(script)))
        if scenario_tools.RECORDING:
            scenario_tools.recorded[key] = rabbit
            return
        assert rabbit == scenario_tools.golden().get(key), f"RabbitMQ's replies differ from the recorded {key}"
    else:
        assert key in scenario_tools.golden(), f"no recorded RabbitMQ replies for {key}"
        rabbit = scenario_tools.golden()[key]
    lite = json.loads(json.dumps(differential.litemq_trace(script, str(tmp_path), url=as_url(db_path))))
    assert differential.first_difference(script, rabbit, lite) is None, differential.first_difference(
        script, rabbit, lite)
