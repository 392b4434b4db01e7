"""Other "machines" on this host for tests: network namespaces that reach the local PostgreSQL server only over a
veth pair, programs run inside them, and links that can be cut.

    with machines(tmp_path) as network:           # machines "a" and "b"
        a = network["a"]
        program = a.python("-m", "two_machines_workers", "session", a.server_url("test"))
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
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

from services import POSTGRESQL_HOST, POSTGRESQL_PORT, _unavailable, require_postgresql

ADDRESS_RANGE = ipaddress.ip_network("198.18.0.0/15")
RELAY_PORT = 5432
PROGRAM_LIFETIME = 30.0
"""Longest a program started in a machine may run: it is killed then, whatever the test is doing."""

DROP_EVERYTHING = "1,6 0 0 2"
"""Classic BPF for tc's ``bpf da``: one instruction returning TC_ACT_SHOT, so every packet is dropped."""


class Relay:
    """Carries every TCP connection made to one of its addresses to ``upstream``, both ways, one thread per
    direction. A close or reset on one side is passed on to the other; a cut link leaves both sockets open, as a
    partition leaves a server's socket.

    ``keepalive=(idle, interval, count)`` gives the machine-side sockets the TCP keepalive the server would give
    its own (PostgreSQL's ``tcp_keepalives_idle/interval/count``): once it finds the machine gone, the relay
    closes the upstream socket, and the server ends that session as it would have on its own socket."""

    def __init__(self, upstream: tuple[str, int] = (POSTGRESQL_HOST, POSTGRESQL_PORT),
                 keepalive: Optional[tuple[int, int, int]] = None) -> None:
        self.upstream = upstream
        self.keepalive = keepalive
        self.relayed: list[Relayed] = []
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def listen(self, address: str, port: int = RELAY_PORT) -> None:
        listener = socket.create_server((address, port))
        listener.settimeout(0.1)  # the accept loop looks at _stopped this often
        self._listeners.append(listener)
        self._start(self._accept, listener, address)

    def connections(self, address: Optional[str] = None) -> list["Relayed"]:
        """The connections still relayed (from machines listening at ``address``, or all)."""
        with self._lock:
            return [r for r in self.relayed if not r.closed.is_set() and address in (None, r.address)]

    def close(self) -> None:
        self._stopped.set()
        for listener in self._listeners:
            listener.close()
        with self._lock:
            relayed = list(self.relayed)
        for connection in relayed:
            connection.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _start(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"relay-{target.__name__}")
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket, address: str) -> None:
        while not self._stopped.is_set():
            try:
                downstream, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed by close()
            downstream.settimeout(None)
            if self.keepalive is not None:
                idle, interval, count = self.keepalive
                downstream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            connection = Relayed(address, downstream, upstream)
            with self._lock:
                self.relayed.append(connection)
            if self._stopped.is_set():  # close() took its list of connections before this one was added
                connection.close()
                return
            self._start(connection.pump, downstream, upstream)
            self._start(connection.pump, upstream, downstream)


class Relayed:
    """One relayed connection: the machine's side (``downstream``) and the server's (``upstream``)."""

    def __init__(self, address: str, downstream: socket.socket, upstream: socket.socket) -> None:
        self.address = address
        self.downstream = downstream
        self.upstream = upstream
        self.upstream_port: int = upstream.getsockname()[1]
        """The port the server sees as this session's ``client_port`` in pg_stat_activity."""
        self.closed = threading.Event()
        self.closed_at: Optional[float] = None
        """``time.time()`` when the relay closed both sockets."""
        self.error: Optional[OSError] = None
        """What ended it, if not a close: a reset, or the keepalive's ETIMEDOUT."""
        self._ended = 0
        self._lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # a half-close is passed on as one
        except OSError as exc:
            if not self.closed.is_set():
                self.error = exc
            self.close()
            return
        with self._lock:
            self._ended += 1
            both = self._ended == 2
        if both:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed_at = time.time()
            self.closed.set()
        for sock in (self.downstream, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump, blocked in recv
            except OSError:
                pass
            sock.close()


class Program:
    """A Python program running in a machine: its stdout and stderr go to files, it is killed by pid at the end
    of its lifetime or of the test."""

    def __init__(self, argv: Sequence[str], workdir: Path, name: str, lifetime: float) -> None:
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), PYTHONUNBUFFERED="1")
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
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"network namespaces need iproute2 ({', '.join(missing)} not found)")
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
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s in ADDRESS_RANGE overlapping no address of the root namespace."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    used = {ipaddress.ip_interface(word).network for word in shown.split() if "/" in word and word[0].isdigit()}
    chosen: list[ipaddress.IPv4Network] = []
    while len(chosen) < count:
        index = random.randrange(ADDRESS_RANGE.num_addresses // 4)
        subnet = ipaddress.ip_network(f"{ADDRESS_RANGE.network_address + 4 * index}/30")
        if subnet not in chosen and not any(subnet.overlaps(other) for other in used):
            chosen.append(subnet)
    return chosen
