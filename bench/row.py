"""One row of the table in a process of its own: ``python -m bench.row '<spec as JSON>'``.

The process imports only the harness and the one system it measures, runs the workload, and prints its result as
one JSON line starting with ``RESULT``; its peak RSS is the row's."""

from __future__ import annotations

import json
import sys

MARK = "RESULT "


def main() -> None:
    spec = json.loads(sys.argv[1])
    from .systems import make
    from .workloads import run

    system = make(spec["system"], spec.get("engine", "sqlite"))
    result = run(system, spec)
    versions = system.versions()
    if system.family == "rabbitmq" and spec["workload"] != "build":
        host, port = spec["rabbitmq"]
        versions["rabbitmq"] = system.server_version({"host": host, "port": port})  # type: ignore[attr-defined]
    result["versions"] = versions
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
