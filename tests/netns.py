"""Other "machines" on this host for tests: network namespaces that reach the local PostgreSQL server only over a
veth pair, programs run inside them, and links that can be cut.

    with machines(tmp_path) as network:           # machines "a" and "b"
        a = network["a"]
        program = a.python("-m", "two_machines_workers", "probe", a.server_address, "5432")
        a.cut()                                    # a partition: nothing more crosses, nothing is closed

Each machine is a namespace of its own (loopback up) joined to the root namespace by its own veth pair, with a /30
taken at random from 198.18.0.0/15 (RFC 2544's benchmarking range, on no real network). The server listens on
127.0.0.1 only and its configuration is left alone: a ``Relay`` in the test process listens on each pair's
root-side address, port 5432, and carries every connection to 127.0.0.1:5432 both ways.

Names carry a random suffix, so parallel runs and leftovers never collide; everything made is removed on exit,
whether the test passed or not. Without root or iproute2 the test is skipped (it fails instead under
``LITEMQ_REQUIRE_SERVICES=1``, as the service tests do).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

from relay import RELAY_PORT, Relay
from services import _unavailable, require_postgresql

ADDRESS_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
PROGRAM_LIFETIME = 30.0
"""Longest a program started in a machine may run: it is killed then, whatever the test is doing."""

DROP_EVERYTHING = "1,6 0 0 2"
"""Classic BPF for tc's ``bpf da``: one instruction returning TC_ACT_SHOT, so every packet is dropped."""


class Program:
    """A Python program running in a machine: its stdout and stderr go to files, it is killed by pid at the end
    of its lifetime or of the test."""

    def __init__(self, argv: Sequence[str], workdir: Path, name: str, lifetime: float) -> None:
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            # ip netns exec execs the command after joining the namespace: the pid is the program's.
            self.popen = subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                          env=env, cwd=os.getcwd())
        self.pid = self.popen.pid
        self.killed_at: Optional[float] = None
        self._watchdog = threading.Timer(lifetime, self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def lines(self) -> list[str]:
        """What the program printed so far, one entry per complete line."""
        text = self.stdout_path.read_text()
        return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]

    def output(self) -> str:
        return f"stdout:\n{self.stdout_path.read_text()}\nstderr:\n{self.stderr_path.read_text()}"

    def wait_for_lines(self, prefix: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until ``count`` lines starting with ``prefix`` were printed; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines() if line.startswith(prefix)]
            if len(found) >= count:
                return found
            if self.popen.poll() is not None:
                found = [line for line in self.lines() if line.startswith(prefix)]  # printed just before the end
                if len(found) >= count:
                    return found
                raise AssertionError(f"program {self.pid} ended ({self.popen.returncode}) with {len(found)} of "
                                     f"{count} {prefix!r} lines\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"program {self.pid} printed {len(found)} of {count} {prefix!r} lines "
                                     f"within {timeout} s\n{self.output()}")
            time.sleep(0.01)

    def wait(self, timeout: float) -> int:
        """Its exit status, once it ended within ``timeout`` seconds; else kill it and fail."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"program {self.pid} still ran after {timeout} s\n{self.output()}") from None
        self._watchdog.cancel()
        return code

    def kill(self) -> None:
        """SIGKILL by pid (if still running), and reap it."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.killed_at = time.time()
            except ProcessLookupError:
                pass
        self.popen.wait()
        self._watchdog.cancel()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


class Machine:
    """A network namespace joined to the root namespace by a veth pair: ``address`` inside, ``server_address``
    (where the relay listens) on the root side."""

    def __init__(self, network: "Network", name: str, subnet: ipaddress.IPv4Network) -> None:
        self.network = network
        self.name = name
        self.netns = f"litemq-{network.suffix}-{name}"
        self.root_veth = f"lmq{network.suffix}{name}"[:15]
        self.veth = "eth0"  # inside the namespace, where no other interface can have the name
        root_side, inside = list(subnet.hosts())
        self.server_address = str(root_side)
        self.address = str(inside)
        self.prefix = subnet.prefixlen
        self.cut_how: Optional[str] = None
        """How the current cut was made ("drop" or "down", see ``cut``); None while the link works."""
        self._programs = 0

    def server_url(self, database: str, user: str = "postgres", query: str = "") -> str:
        """A PostgreSQL URL to the server as this machine reaches it."""
        return f"postgresql://{user}@{self.server_address}:{RELAY_PORT}/{database}" + (f"?{query}" if query else "")

    def python(self, *args: str, lifetime: float = PROGRAM_LIFETIME) -> Program:
        """Start ``python -u ARGS`` inside this machine, with the test's interpreter, environment and sys.path."""
        self._programs += 1
        program = Program(["ip", "netns", "exec", self.netns, sys.executable, "-u", *args],
                          self.network.workdir, f"{self.name}-{self._programs}", lifetime)
        self.network.programs.append(program)
        return program

    def cut(self, how: str = "drop") -> None:
        """Cut this machine's link, as a partition would: no FIN or RST crosses, every socket stays open, sends
        go unanswered. ``how``: "drop" has tc drop every packet on arrival at either end of the veth (each
        sender's own sends succeed, as on a real network; where tc cannot, "down" is used instead); "down" sets
        both ends down (their routes go with them, so sends fail locally with EHOSTUNREACH, kept as a soft error)."""
        assert self.cut_how is None, f"machine {self.name} is already cut"
        if how == "drop":
            try:
                for ns, dev in ((None, self.root_veth), (self.netns, self.veth)):
                    _ip(ns, "tc", "qdisc", "add", "dev", dev, "clsact")
                    _ip(ns, "tc", "filter", "add", "dev", dev, "ingress", "bpf", "da", "bytecode", DROP_EVERYTHING)
                self.cut_how = "drop"
                return
            except (OSError, subprocess.CalledProcessError):
                self._remove_drops()
        elif how != "down":
            raise ValueError(f"how must be 'drop' or 'down', got {how!r}")
        _ip(self.netns, "ip", "link", "set", self.veth, "down")
        _ip(None, "ip", "link", "set", self.root_veth, "down")
        self.cut_how = "down"

    def heal(self) -> None:
        """Undo ``cut``: packets cross again, and connections that survived resume."""
        if self.cut_how == "drop":
            self._remove_drops()
        elif self.cut_how == "down":
            _ip(None, "ip", "link", "set", self.root_veth, "up")
            _ip(self.netns, "ip", "link", "set", self.veth, "up")
        self.cut_how = None

    def _remove_drops(self) -> None:
        for ns, dev in ((None, self.root_veth), (self.netns, self.veth)):
            _ip(ns, "tc", "qdisc", "del", "dev", dev, "clsact", check=False)

    def _create(self) -> None:
        _ip(None, "ip", "link", "add", self.root_veth, "type", "veth", "peer", "name", self.veth, "netns", self.netns)
        _ip(None, "ip", "addr", "add", f"{self.server_address}/{self.prefix}", "dev", self.root_veth)
        _ip(None, "ip", "link", "set", self.root_veth, "up")
        _ip(self.netns, "ip", "addr", "add", f"{self.address}/{self.prefix}", "dev", self.veth)
        _ip(self.netns, "ip", "link", "set", self.veth, "up")
        _ip(self.netns, "ip", "link", "set", "lo", "up")


class Network:
    """The machines, their relay and their programs; a context manager that removes them all on exit."""

    def __init__(self, names: Sequence[str], workdir: Path, keepalive: Optional[tuple[int, int, int]] = None) -> None:
        self.suffix = secrets.token_hex(3)
        self.workdir = workdir
        self.programs: list[Program] = []
        self.relay = Relay(keepalive=keepalive)
        subnets = _free_subnets(len(names))
        self.machines = {name: Machine(self, name, subnet) for name, subnet in zip(names, subnets)}
        self._made: list[Machine] = []

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def __enter__(self) -> "Network":
        try:
            for machine in self.machines.values():
                _ip(None, "ip", "netns", "add", machine.netns)
                self._made.append(machine)
                machine._create()
                self.relay.listen(machine.server_address)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every program (by pid), stop the relay, delete the namespaces and veths. Runs to the end."""
        for program in self.programs:
            program.kill()
        self.relay.close()
        for machine in self._made:
            _ip(None, "ip", "netns", "delete", machine.netns, check=False)
            # Deleting the namespace destroys the pair; this only matters if something still held it.
            if Path(f"/sys/class/net/{machine.root_veth}").exists():
                _ip(None, "ip", "link", "delete", machine.root_veth, check=False)
        self._made.clear()


def require_namespaces() -> None:
    """Return when this process can make network namespaces; otherwise skip (or fail, when required)."""
    if os.geteuid() != 0:
        _unavailable("network namespaces and veth pairs need root (CI runs the suite as root)")
    if shutil.which("ip") is None:  # tc is welcome (see Machine.cut) but not needed
        _unavailable("network namespaces need iproute2 (no ip command found)")
    probe = f"litemq-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        _unavailable(f"cannot make a network namespace here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)


def machines(workdir: Path, names: Sequence[str] = ("a", "b"),
             keepalive: Optional[tuple[int, int, int]] = None) -> Network:
    """Machines reaching the local PostgreSQL server through a relay (skips the test if either is impossible)."""
    require_namespaces()
    require_postgresql()
    return Network(names, workdir, keepalive)


@pytest.fixture
def two_machines(tmp_path: Path) -> Iterator[Network]:
    """Machines "a" and "b", removed after the test."""
    with machines(tmp_path) as network:
        yield network


def _ip(netns: Optional[str], *command: str, check: bool = True) -> None:
    """Run an iproute2 command, in ``netns`` if given; on failure raise with its stderr."""
    argv = list(command)
    if netns is not None:
        argv[1:1] = ["-n", netns]  # ip -n NS ..., tc -n NS ...
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise CommandFailed(done.returncode, argv, done.stdout, done.stderr)


class CommandFailed(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{' '.join(self.cmd)} failed ({self.returncode}): {self.stderr.strip()}"


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s in ADDRESS_RANGE overlapping no address of the root namespace."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    used = {ipaddress.ip_interface(word).network for word in shown.split() if "/" in word and word[0].isdigit()}
    chosen: list[ipaddress.IPv4Network] = []
    while len(chosen) < count:
        index = secrets.randbelow(ADDRESS_RANGE.num_addresses // 4)  # unseeded: pytest-randomly seeds random
        subnet = ipaddress.IPv4Network(f"{ADDRESS_RANGE.network_address + 4 * index}/30")
        if subnet not in chosen and not any(subnet.overlaps(other) for other in used):
            chosen.append(subnet)
    return chosen
