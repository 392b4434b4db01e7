"""Tests marked ``alone`` run with no other test of the run beside them, when pytest-xdist runs the suite on several
workers: they measure latency or CPU, or need a PostgreSQL server where no session of this run holds a snapshot.

Between workers: every test holds the run's lock shared while it runs (set-up, call, tear-down); an ``alone`` test
holds it exclusive. A turnstile in front of it makes the exclusive one next: once an ``alone`` test waits, no worker
starts a new test until it is done. Without xdist (``-n 0``, one process) there is nobody to wait for.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Iterator

import pytest


class RunningAlone:
    """The plugin on an xdist worker; ``folder`` is shared by the run's workers (their basetemp's parent)."""

    def __init__(self, folder: Path) -> None:
        self.turnstile = os.open(folder / "alone-turnstile.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.running = os.open(folder / "alone-running.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        alone = item.get_closest_marker("alone") is not None
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.running, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(self.turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.running, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(self.turnstile, fcntl.LOCK_UN)


def register(config: pytest.Config) -> None:
    """Take part in the run's lock when this process is one of xdist's workers."""
    if hasattr(config, "workerinput") and config.option.basetemp:
        config.pluginmanager.register(RunningAlone(Path(config.option.basetemp).parent), "litemq-running-alone")
