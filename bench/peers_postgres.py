"""pgqueuer and procrastinate, the PostgreSQL job queues ``python -m bench --engine postgresql`` compares litemq with,
used through their public APIs as their users use them: a synchronous call enqueues (pgqueuer's ``SyncQueries.enqueue``
on psycopg, procrastinate's ``Task.defer`` on a synchronous ``App``), and their asyncio worker runs a job function
(pgqueuer's ``PgQueuer`` on asyncpg with an entrypoint, as its README shows, procrastinate's ``App.run_worker_async``
with a task). pgqueuer's psycopg driver for the worker stalls its queries for up to a second while it waits for
notifications on the same connection, so the worker uses asyncpg, the driver its documentation starts with.

A job queue pushes jobs into a function and counts a job done when the function returns. ``WorkerReceiver`` shows
that as the bench's pull consumer: the worker runs in this thread's event loop, only while ``next()`` waits; its
job function hands the body over and returns (the job is then completed by the library, which is its ack), so
``ack()`` has nothing left to do. On an empty queue (e: the producer starts once the consumer is ready) the worker
starts at once and runs for ``WARM_SECONDS`` before the receiver is handed over, so its start-up (connecting,
checking its tables, LISTEN) is not timed, as a litemq consumer's is not; on a filled queue (c, d, h, i, k) it
starts at the first ``next()``, so its start-up (tens of milliseconds) is inside the timed part. A wait that ends
with nothing while jobs are still queued goes on (up to ``PATIENCE_SECONDS``): a worker pauses between jobs in
ways a claim does not (start-up, pgqueuer's occasional second, procrastinate's fetch on a deep queue), and a
consumer of i stops after 0.1 s without a message. Stopping a worker lets it finish the jobs it holds: their
bodies are what ``stop()`` returns, so the consumer counts them."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable, Coroutine, Optional

from .systems import QUEUE, Client, Message, Receiver, _module_present, _version
from .systems_postgres import PostgresSystem, drop_schemas, new_schema_name

Deliver = Callable[[Any], None]

FILL_BATCH = 10000
PATIENCE_SECONDS = 60.0
WARM_SECONDS = 1.0
POOL_MAX = 4
"""procrastinate's connection pool: from 1 connection up to this (psycopg_pool's default opens 4 at once, and the
server is shared)."""


def search_path(cfg: dict[str, Any]) -> str:
    return f"-c search_path={cfg['schema']}"


class WorkerReceiver(Receiver):
    """A job queue's worker seen as a consumer (see the module's docstring). ``run(deliver)`` is the worker's
    coroutine, ``stop(task)`` asks it to stop."""

    def __init__(self, run: Callable[[Deliver], Coroutine[Any, Any, None]],
                 stop: Callable[["asyncio.Task[None]"], None], queued: Callable[[], int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.run, self.stop_worker, self.queued = run, stop, queued
        self.inbox: collections.deque[Any] = collections.deque()
        self.task: Optional[asyncio.Task[None]] = None
        self.waiter: Optional[asyncio.Future[None]] = None
        if not queued():
            self.task = self.loop.create_task(self.run(self.deliver))
            self.loop.run_until_complete(asyncio.wait((self.task,), timeout=WARM_SECONDS))
            if self.task.done():
                self.task.result()
                raise RuntimeError("the worker stopped as it started")

    def deliver(self, body: Any) -> None:
        self.inbox.append(body)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def next(self, timeout: float) -> Optional[Message]:
        if self.task is None:
            self.task = self.loop.create_task(self.run(self.deliver))
        waited = 0.0
        while not self.inbox:
            self.loop.run_until_complete(self._wait(timeout))
            waited += timeout
            if self.inbox:
                break
            if self.task.done():
                self.task.result()  # the worker's error, if it failed
                raise RuntimeError("the worker stopped")
            if waited >= PATIENCE_SECONDS or not self.queued():
                return None
        return self.inbox.popleft(), None

    async def _wait(self, timeout: float) -> None:
        assert self.task is not None
        self.waiter = self.loop.create_future()
        try:
            await asyncio.wait((self.waiter, self.task), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiter = None

    def ack(self, handle: Any) -> None:
        pass  # done when the job function returned

    def stop(self) -> list[Message]:
        if self.task is not None and not self.task.done():
            self.stop_worker(self.task)
            self.loop.run_until_complete(asyncio.wait((self.task,), timeout=60))
        left = [(body, None) for body in self.inbox]
        self.inbox.clear()
        return left

    def close(self) -> None:
        self.stop()
        if self.task is not None and self.task.done() and not self.task.cancelled():
            self.task.exception()  # retrieved: a worker stopped by cancelling it is not an error here
        self.loop.close()


class JobQueueClient(Client):
    """What both job queues share: ``get`` is a worker taking one job at a time, depth is counted in SQL."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.getter: Optional[Receiver] = None
        self.counter: Any = None

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        if self.getter is None:
            self.getter = self.receiver(1, queue)
        return self.getter.next(10.0)

    def ack(self, handle: Any) -> None:
        pass

    def count(self, sql: str, queue: str) -> int:
        import psycopg

        if self.counter is None:
            self.counter = psycopg.connect(self.cfg["pg_url"], autocommit=True, options=search_path(self.cfg))
        return int(self.counter.execute(sql, (queue,)).fetchone()[0])

    def close(self) -> None:
        if self.getter is not None:
            self.getter.close()
        if self.counter is not None:
            self.counter.close()


class JobQueue(PostgresSystem):
    module = ""
    also: tuple[str, ...] = ()
    distribution = ""
    not_applicable = {"f": "no exchanges", "g": "no exchanges"}

    def available(self, options: dict[str, Any]) -> Optional[str]:
        missing = [m for m in (self.module, *self.also) if _module_present(m)]
        return f"{', '.join(missing)} not installed" if missing else super().available(options)

    def versions(self) -> dict[str, str]:
        return {name: _version(name) for name in (self.distribution, *self.also, "psycopg")}

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        import psycopg

        cfg = {"pg_url": options["pg_url"], "schema": new_schema_name(options)}
        with psycopg.connect(cfg["pg_url"], autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{cfg["schema"]}"')
        try:
            self.install(cfg)
        except BaseException:
            drop_schemas(cfg["pg_url"], [cfg["schema"]])
            raise
        return cfg

    def install(self, cfg: dict[str, Any]) -> None:
        raise NotImplementedError


# =============================================================================================================
# pgqueuer
# =============================================================================================================

class PgQueuerClient(JobQueueClient):
    """Enqueues with ``SyncQueries`` on a psycopg connection; works with ``PgQueuer`` on an asyncpg connection,
    its ``batch_size`` the prefetch. The entrypoint's name is the queue's."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import psycopg
        from pgqueuer.db import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        super().__init__(cfg)
        self.conn = psycopg.connect(cfg["pg_url"], autocommit=True, options=search_path(cfg))
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        self.queries.enqueue(key, body)

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        n = len(bodies)
        payloads: list[Optional[bytes]] = list(bodies)
        self.queries.enqueue([QUEUE] * n, payloads, [0] * n)

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        for start in range(0, len(bodies), FILL_BATCH):
            chunk: list[Optional[bytes]] = list(bodies[start:start + FILL_BATCH])
            self.queries.enqueue([queue] * len(chunk), chunk, [0] * len(chunk))

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        managers: list[Any] = []

        async def run(deliver: Deliver) -> None:
            import asyncpg
            from pgqueuer import AsyncpgDriver, PgQueuer

            conn = await asyncpg.connect(self.cfg["pg_url"], server_settings={"search_path": self.cfg["schema"]})
            try:
                manager = PgQueuer(AsyncpgDriver(conn))
                managers.append(manager)

                @manager.entrypoint(queue)
                async def job(job: Any) -> None:
                    deliver(job.payload)

                await manager.run(batch_size=max(1, prefetch))
            finally:
                await conn.close()

        def stop(task: "asyncio.Task[None]") -> None:
            if managers:
                managers[0].shutdown.set()
            else:
                task.cancel()

        return WorkerReceiver(run, stop, lambda: self.depth(queue))

    def depth(self, queue: str = QUEUE) -> int:
        return sum(row.count for row in self.queries.queue_size() if row.status == "queued" and row.entrypoint == queue)

    def close(self) -> None:
        super().close()
        self.conn.close()


class PgQueuer(JobQueue):
    key = "pgqueuer"
    label = "pgqueuer"
    family = "pgqueuer"
    module = "pgqueuer"
    also = ("asyncpg",)
    distribution = "pgqueuer"
    notes = {"a": "SyncQueries.enqueue", "b": "enqueue(lists of 100): one INSERT",
             "c": "PgQueuer worker, batch_size 1", "d": "worker, batch_size 100",
             "e": "enqueue; worker, batch_size 100", "e-lat": "enqueue; worker, NOTIFY by trigger",
             "h": "worker, batch_size 1", "i-1": "worker, batch_size 1", "i-4": "worker, batch_size 1",
             "j": "SyncQueries.enqueue", "k-10KB": "enqueue; worker, batch_size 1",
             "k-1MB": "enqueue; worker, batch_size 1", "l": "PgQueuer worker"}

    def install(self, cfg: dict[str, Any]) -> None:
        import psycopg
        from pgqueuer.queries import Queries

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(cfg["pg_url"], autocommit=True, options=search_path(cfg))
            try:
                await Queries.from_psycopg_connection(conn).install()
            finally:
                await conn.close()

        asyncio.run(install())

    def client(self, cfg: dict[str, Any]) -> Client:
        return PgQueuerClient(cfg)

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import psycopg\n"
                "from pgqueuer.db import SyncPsycopgDriver\n"
                "from pgqueuer.queries import SyncQueries\n"
                "cfg = json.loads(sys.argv[1])\n"
                "conn = psycopg.connect(cfg['pg_url'], autocommit=True, options='-c search_path=' + cfg['schema'])\n"
                "SyncQueries(SyncPsycopgDriver(conn)).enqueue('bench', sys.argv[2].encode())\n"
                "conn.close()\n")


# =============================================================================================================
# procrastinate
# =============================================================================================================

def procrastinate_app(cfg: dict[str, Any], function: Callable[..., Any]) -> Any:
    """An App on the store's schema with one task, ``bench`` in queue ``bench``, running ``function``."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=cfg["pg_url"], kwargs={"options": search_path(cfg)}, min_size=1, max_size=POOL_MAX))
    app.task(name=QUEUE, queue=QUEUE)(function)
    return app


def _ignore(body: str) -> None:
    """The task as the deferring side declares it: only its name and queue matter there."""


class ProcrastinateClient(JobQueueClient):
    """Defers with a synchronous App (bodies are text: a task's arguments are JSON); works with
    ``run_worker_async`` on an async App, concurrency 1 (it fetches one job per query: no prefetch)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.app = procrastinate_app(cfg, _ignore)
        self.app.open()
        self.task = self.app.tasks[QUEUE]

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        self.task.defer(body=body.decode("latin-1"))

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        self.task.batch_defer(*({"body": data.decode("latin-1")} for data in bodies))

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        for start in range(0, len(bodies), FILL_BATCH):
            self.publish_batch(bodies[start:start + FILL_BATCH])

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        async def run(deliver: Deliver) -> None:
            async def bench(body: str) -> None:
                deliver(body)

            app = procrastinate_app(self.cfg, bench)
            async with app.open_async():
                await app.run_worker_async(queues=[queue], concurrency=1, install_signal_handlers=False)

        def stop(task: "asyncio.Task[None]") -> None:
            task.cancel()  # how its worker is stopped: it finishes the jobs it holds

        return WorkerReceiver(run, stop, lambda: self.depth(queue))

    def depth(self, queue: str = QUEUE) -> int:
        return self.count("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status = 'todo'", queue)

    def close(self) -> None:
        super().close()
        self.app.close()


class Procrastinate(JobQueue):
    key = "procrastinate"
    label = "procrastinate"
    family = "procrastinate"
    module = "procrastinate"
    distribution = "procrastinate"
    notes = {"a": "Task.defer", "b": "batch_defer of 100", "c": "run_worker_async, concurrency 1",
             "d": "no prefetch: worker, concurrency 1", "e": "defer; worker, concurrency 1",
             "e-lat": "defer; worker, concurrency 1, LISTEN", "h": "worker, concurrency 1",
             "i-1": "worker, concurrency 1", "i-4": "worker, concurrency 1", "j": "Task.defer",
             "k-10KB": "defer; worker, concurrency 1", "k-1MB": "defer; worker, concurrency 1",
             "l": "run_worker_async"}

    def install(self, cfg: dict[str, Any]) -> None:
        app = procrastinate_app(cfg, _ignore)
        with app.open():
            app.schema_manager.apply_schema()

    def client(self, cfg: dict[str, Any]) -> Client:
        return ProcrastinateClient(cfg)

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import procrastinate\n"
                "cfg = json.loads(sys.argv[1])\n"
                "app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=cfg['pg_url'], "
                "kwargs={'options': '-c search_path=' + cfg['schema']}, min_size=1, max_size=1))\n"
                "@app.task(name='bench', queue='bench')\n"
                "def bench(body): pass\n"
                "with app.open():\n"
                "    bench.defer(body=sys.argv[2])\n")
