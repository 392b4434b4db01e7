"""Workers on two machines sharing one broker on PostgreSQL: what one machine's consumer held comes to the other
machine's when its process dies or its link is cut, flagged redelivered, nothing lost.

The machines are network namespaces reaching the local server over veth pairs (tests/netns.py); the programs
run tests/two_machines_workers.py. Each test has a schema of its own, dropped afterwards. The times printed
(with ``-s``) are what the README's note on crash detection quotes.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from netns import Machine, Network, Program, machines, two_machines  # noqa: F401 (a fixture)
from services import POSTGRESQL_URL, require_postgresql

pytestmark = pytest.mark.slow  # real processes in namespaces, real-time waits: seconds a test

QUEUE = "jobs"


class Got(NamedTuple):
    body: str
    redelivered: bool
    at: float  # time.time() when it reached the worker


def deliveries(program: Program) -> list[Got]:
    return [Got(body, redelivered == "1", float(at))
            for _, body, redelivered, at in (line.split() for line in program.lines() if line.startswith("got "))]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name; the schema is dropped after the test (the test's machines are gone by then)."""
    require_postgresql()
    import psycopg  # here, not at the top: require_postgresql() skips the test (or fails it) without psycopg
    name = f"t_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def worker(machine: Machine, schema: str, name: str, *args: object) -> Program:
    """Start a worker of two_machines_workers on ``machine``, on the broker in ``schema``."""
    url = machine.server_url("test", query=f"schema={schema}")
    return machine.python("-m", "two_machines_workers", name, url, QUEUE, *map(str, args))


def hold_some(network: Network, schema: str, count: int, prefetch: int, lease: float) -> tuple[Program, Program,
                                                                                                   set[str]]:
    """A producer on "a" publishes ``count`` messages, a consumer on "a" holds ``prefetch`` of them unacked, a
    consumer on "b" acks the rest and waits for more. Returns the holder, the drainer and the held bodies."""
    a, b = network["a"], network["b"]
    producer = worker(a, schema, "produce", count)
    assert producer.wait(15) == 0, producer.output()
    holder = worker(a, schema, "hold", prefetch, lease)
    holder.wait_for_lines("holding")
    held = deliveries(holder)
    assert len({got.body for got in held}) == prefetch and not any(got.redelivered for got in held)
    drainer = worker(b, schema, "drain", count)
    free = drainer.wait_for_lines("got ", count - prefetch)
    assert len(free) == count - prefetch
    return holder, drainer, {got.body for got in held}


def assert_all_delivered_once_more_flagged(drainer: Program, count: int, held: set[str]) -> list[Got]:
    """The drainer got every message; each held one (delivered before, on "a") came redelivered, and any body it
    saw twice came flagged the second time. Returns the held ones as it got them."""
    assert drainer.wait(20) == 0, drainer.output()
    got = deliveries(drainer)
    assert {g.body for g in got} == {f"m{n}" for n in range(count)}, "a message was lost"
    seen = set(held)
    for g in got:
        assert g.redelivered == (g.body in seen), f"{g.body} redelivered={g.redelivered}, seen before: {g.body in seen}"
        seen.add(g.body)
    returned = [g for g in got if g.body in held]
    assert {g.body for g in returned} == held
    return returned


def test_unacked_messages_of_a_killed_consumer_go_to_the_other_machine(schema: str, two_machines: Network) -> None:
    lease = 60.0  # far beyond the test: only the death of the session can give the messages back in time
    holder, drainer, held = hold_some(two_machines, schema, count=20, prefetch=5, lease=lease)
    time.sleep(0.5)
    assert not held & {g.body for g in deliveries(drainer)}, "the other machine got a held message"

    holder.kill()
    assert holder.killed_at is not None
    returned = assert_all_delivered_once_more_flagged(drainer, 20, held)
    first = min(g.at for g in returned) - holder.killed_at
    last = max(g.at for g in returned) - holder.killed_at
    print(f"\nkilled consumer on machine a: its {len(held)} messages reached machine b {first:.3f} s to "
          f"{last:.3f} s after the SIGKILL (lease {lease:g} s)")
    assert last < 5.0, "the dead consumer's messages waited for something other than its session's end"


def test_messages_held_behind_a_cut_link_return_when_their_lease_expires(schema: str, two_machines: Network) -> None:
    lease = 2.0
    renewal = lease / 3  # how often the holder renews while it can (Session.lease_taken)
    holder, drainer, held = hold_some(two_machines, schema, count=10, prefetch=5, lease=lease)
    time.sleep(1.5 * lease)
    assert not held & {g.body for g in deliveries(drainer)}, "a lease ran out while its holder could renew it"

    a = two_machines["a"]
    a.cut()
    cut_at = time.time()
    returned = assert_all_delivered_once_more_flagged(drainer, 10, held)
    first = min(g.at for g in returned) - cut_at
    last = max(g.at for g in returned) - cut_at
    print(f"\nmachine a cut off ({a.cut_how}) holding {len(held)} messages: they reached machine b {first:.3f} s to "
          f"{last:.3f} s after the cut (lease {lease:g} s, renewed every {renewal:.2f} s)")
    assert first >= lease - renewal - 0.05, "a message came back before its last renewed lease could run out"
    assert last <= lease + 3.0
    assert holder.running, "the holder died: its messages came back by its death, not its lease"
    assert two_machines.relay.connections(a.server_address), "the server saw machine a leave"


def test_messages_held_behind_a_cut_link_return_when_the_servers_keepalive_ends_its_session(
        schema: str, tmp_path: Path) -> None:
    lease = 60.0
    idle, interval, count = 1, 1, 2  # the relay plays the server's tcp_keepalives_idle/interval/count
    with machines(tmp_path, keepalive=(idle, interval, count)) as network:
        holder, drainer, held = hold_some(network, schema, count=10, prefetch=5, lease=lease)
        a = network["a"]
        time.sleep(0.2)  # let the last acknowledgements cross: keepalive probes only an idle connection
        sessions = network.relay.connections(a.server_address)  # the holder's: the producer's are closed
        a.cut()
        cut_at = time.time()
        returned = assert_all_delivered_once_more_flagged(drainer, 10, held)
        dropped = [r.closed_at for r in sessions if r.closed_at is not None]
        assert dropped, "the relay kept every session of machine a"
        first = min(g.at for g in returned)
        print(f"\nmachine a cut off ({a.cut_how}), server keepalive {idle}/{interval}/{count}: {len(dropped)} of its "
              f"{len(sessions)} sessions dropped, the first {min(dropped) - cut_at:.3f} s after the cut; its "
              f"{len(held)} messages reached machine b {first - cut_at:.3f} s to "
              f"{max(g.at for g in returned) - cut_at:.3f} s after it (lease {lease:g} s)")
        assert first >= min(dropped), "a message came back while every session of its holder was still open"
        assert first - cut_at <= idle + interval * count + 3.0
        assert holder.running
