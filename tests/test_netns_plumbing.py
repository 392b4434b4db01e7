"""The two-machine harness itself (tests/netns.py), checked with plain psycopg: machines reach the server only
through the relay, a cut link is a partition (nothing closes, the server keeps the session), a killed program's
session ends, and nothing is left behind."""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from netns import Machine, Network, Program, machines, two_machines  # noqa: F401 (a fixture)
from relay import SERVER
from services import POSTGRESQL_URL

pytestmark = pytest.mark.slow  # real processes in namespaces, real-time waits: seconds a test

PARTITION_SECONDS = 2.0
"""How long a test watches a cut link for anything crossing it."""


def server_query(sql: str, *params: object) -> object:
    """The first value of the first row, from a session of the test's own (machines() made sure of psycopg)."""
    import psycopg
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()[0][0]


def backend_alive(pid: int) -> bool:
    return server_query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid) == 1


def client_port(pid: int) -> object:
    return server_query("SELECT client_port FROM pg_stat_activity WHERE pid = %s", pid)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def start_session(machine: Machine, tmp_path: Path) -> tuple[Program, int, Path]:
    """A psycopg session from ``machine``, through the relay: its program, backend pid, and the file that makes it
    query again."""
    again = tmp_path / f"again-{machine.name}"
    program = machine.python("-m", "two_machines_workers", "session", machine.server_url("test"), str(again))
    backend = int(program.wait_for_lines("backend ")[0].split()[1])
    assert program.wait_for_lines("selected ") == ["selected 1"]
    return program, backend, again


def cut_session(machine: Machine, tmp_path: Path, how: str) -> tuple[Program, int, Path]:
    """``start_session``, then cut the machine's link ``how``."""
    session = start_session(machine, tmp_path)
    time.sleep(0.2)  # let the last acknowledgements cross: keepalive probes only an idle connection
    machine.cut(how)
    assert machine.cut_how == how
    return session


def test_each_machine_reaches_the_server_only_through_the_relay(two_machines: Network, tmp_path: Path) -> None:
    for name in ("a", "b"):
        machine = two_machines[name]
        direct = machine.python("-m", "two_machines_workers", "probe", SERVER[0], str(SERVER[1]))
        assert direct.wait(10) == 0
        assert direct.lines()[0].startswith("unreachable"), "the namespace shares the host's loopback"

        program, backend, _ = start_session(machine, tmp_path)
        (relayed,) = two_machines.relay.connections(machine.server_address)
        assert client_port(backend) == relayed.upstream_port
    assert two_machines["a"].server_address != two_machines["b"].server_address


CUTS = pytest.mark.parametrize("how", ["drop", "down"])


@CUTS
def test_a_cut_link_hangs_the_next_query_while_the_server_keeps_the_session(
        two_machines: Network, tmp_path: Path, how: str) -> None:
    a = two_machines["a"]
    program, backend, again = cut_session(a, tmp_path, how)
    again.touch()
    time.sleep(PARTITION_SECONDS)
    assert not [line for line in program.lines() if line.startswith("selected again")]
    assert backend_alive(backend), "the server dropped the session of a machine cut off for 2 s"
    (relayed,) = two_machines.relay.connections(a.server_address)
    assert relayed.upstream.fileno() != -1

    a.heal()  # a partition, not a close: the same session carries on
    assert len(program.wait_for_lines("selected again", timeout=10)) == 1
    assert backend_alive(backend)


def test_killing_a_program_ends_its_session_on_the_server(two_machines: Network, tmp_path: Path) -> None:
    program, backend, _ = start_session(two_machines["a"], tmp_path)
    program.kill()
    seconds = wait_until(lambda: not backend_alive(backend), 5, "the server ends a killed program's session")
    print(f"killed program's backend gone after {seconds:.3f} s")
    wait_until(lambda: not two_machines.relay.connections(), 5, "the relay lets go of the closed session")


@CUTS
def test_a_program_killed_behind_a_cut_link_leaves_its_session_open(
        two_machines: Network, tmp_path: Path, how: str) -> None:
    a = two_machines["a"]
    program, backend, _ = cut_session(a, tmp_path, how)
    program.kill()
    time.sleep(PARTITION_SECONDS)
    assert backend_alive(backend), "a FIN or RST crossed the cut link"
    assert len(two_machines.relay.connections(a.server_address)) == 1


@CUTS
def test_the_relays_keepalive_ends_a_cut_machines_session_as_the_servers_would(tmp_path: Path, how: str) -> None:
    idle, interval, count = 1, 1, 2
    with machines(tmp_path, keepalive=(idle, interval, count)) as network:
        a = network["a"]
        program, backend, _ = cut_session(a, tmp_path, how)
        cut_at = time.time()
        (relayed,) = network.relay.connections(a.server_address)
        bound = idle + interval * count + 2
        wait_until(lambda: not backend_alive(backend), bound, "the relay gives up a cut machine's session")
        assert relayed.error is not None and relayed.error.errno == errno.ETIMEDOUT, relayed.error
        assert relayed.closed_at is not None
        print(f"keepalive {idle}/{interval}/{count}: relay gave the session up {relayed.closed_at - cut_at:.3f} s "
              f"after the cut ({a.cut_how})")
        assert program.running  # the program never learnt: only the server side gave up


def test_nothing_is_left_behind_when_a_test_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        with machines(tmp_path) as network:
            a = network["a"]
            program = a.python("-c", "import time; print('up', flush=True); time.sleep(60)")
            program.wait_for_lines("up")
            a.cut()
            raise RuntimeError("the test failed")
    assert not program.running
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for machine in network.machines.values():
        assert machine.netns not in namespaces
        assert not Path(f"/sys/class/net/{machine.root_veth}").exists()
        assert f" {machine.server_address}/" not in addresses
    assert not any(thread.is_alive() for thread in network.relay._threads)
