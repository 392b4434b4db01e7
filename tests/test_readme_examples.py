"""The README's AMQP-extras examples run as written, against a fresh file."""

from __future__ import annotations

import re
from pathlib import Path

import litemq
from engines import BrokerSQL

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_amqp_extras_examples_run_and_do_what_they_say(db_path: str, sql: BrokerSQL) -> None:
    blocks = re.findall(r"```python\n(.*?)```", _section("AMQP extras"), re.S)
    assert len(blocks) >= 6
    with litemq.connect(db_path) as conn:
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"conn": conn, "litemq": litemq})
        # The retry example: a job nacked without requeue waits in jobs.wait, then comes back to jobs.
        conn.publish("", "jobs", b"flaky job")
        job = conn.get("jobs")
        job.nack(requeue=False)
        assert conn.declare_queue("jobs.wait", passive=True).message_count == 1
        assert sql("SELECT priority FROM litemq_messages WHERE queue = 'mail'") == [(9,)]
        assert conn.declare_queue("latest", passive=True).message_count == 0
