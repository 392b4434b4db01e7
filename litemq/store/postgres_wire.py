"""Several statements in one round trip, over libpq's pipeline mode driven directly (``psycopg.pq``).

A transaction of the hot path is BEGIN, the shared write lock, a statement and often COMMIT, sent together.
psycopg's own pipeline (``with conn.pipeline()``) spends about 130 us of Python per such round trip on its
generators and waits, more than the server spends on the statement; this sends the same protocol messages with a
few libpq calls and reads the results once (bench figures: the closing note of issue 17). Statements with parameters
are prepared once per connection (per statement and parameter types), as psycopg prepares what it runs often.
"""

from __future__ import annotations

import select
from typing import Any, Optional, Sequence

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

_TUPLES_OK, _COMMAND_OK, _PIPELINE_SYNC = (pq.ExecStatus.TUPLES_OK.value, pq.ExecStatus.COMMAND_OK.value,
                                           pq.ExecStatus.PIPELINE_SYNC.value)
_OK = (_TUPLES_OK, _COMMAND_OK)
_BINARY = pq.Format.BINARY


class Rows:
    """The result of the last statement sent: what the store reads of a cursor."""

    __slots__ = ("_rows", "rowcount", "_next", "_result")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, result: Optional[pq.abc.PGresult] = None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._next = 0
        self._result = result

    @property
    def description(self) -> list[tuple[str]]:
        """The columns' names, as a cursor's description begins."""
        result = self._result
        if result is None:
            return []
        return [((result.fname(i) or b"").decode(),) for i in range(result.nfields)]

    def fetchone(self) -> Optional[tuple[Any, ...]]:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows


class Wire:
    """One connection's pipelined round trips; the caller holds the store's lock."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._pg = conn.pgconn
        self._tx = Transformer(conn)
        self._prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}

    def send(self, statements: Sequence[tuple[str, Sequence[Any], Optional[bool]]], wanted: int = -1) -> Rows:
        """Run ``statements`` (text, parameters, prepare: False for never, True for even without parameters) in
        order, in one round trip; the rows of the ``wanted`` one (the last by default). The first that fails raises
        its psycopg error, once the server has answered them all (those after it did not run)."""
        pg, tx = self._pg, self._tx
        pg.enter_pipeline_mode()
        try:
            preparing = [self._send_one(text, params, prepare) for text, params, prepare in statements]
            pg.pipeline_sync()
            self._flush()
            results = self._results()
            pg.exit_pipeline_mode()
        except BaseException:
            self._abandon()
            raise
        # A statement prepared on the way answers twice (its preparing, then its result): keep the result.
        answers = iter(results)
        own = []
        for key in preparing:
            if key is not None:
                prepared = next(answers)
                if prepared.status != _COMMAND_OK:
                    del self._prepared[key]  # it never came to exist on the server
            own.append(next(answers))
        failed = next((r for r in own if r.status not in _OK), None)
        if failed is not None:
            raise psycopg.errors.error_from_result(failed, encoding=self._conn.info.encoding)
        last = own[wanted]
        if last.status != _TUPLES_OK:
            return Rows([], last.command_tuples or 0)
        tx.set_pgresult(last)
        return Rows(tx.load_rows(0, last.ntuples, tuple), last.ntuples, last)

    def _send_one(self, text: str, params: Sequence[Any],
                  prepare: Optional[bool]) -> Optional[tuple[str, tuple[int, ...]]]:
        """Queue one statement; the key of the statement it prepares on the way, if it does."""
        pg, tx = self._pg, self._tx
        if not params:
            if not prepare:
                pg.send_query_params(text.encode(), None, result_format=_BINARY)
                return None
            values, types, formats = None, (), None
        else:
            values = tx.dump_sequence(params, [PyFormat.AUTO] * len(params))
            types, formats = tx.types, tx.formats
            if prepare is False:
                pg.send_query_params(text.encode(), values, param_types=types, param_formats=formats,
                                     result_format=_BINARY)
                return None
        key = (text, tuple(types or ()))
        name = self._prepared.get(key)
        preparing = None
        if name is None:
            name = self._prepared[key] = f"litemq_{len(self._prepared)}".encode()
            pg.send_prepare(name, text.encode(), param_types=types)
            preparing = key
        pg.send_query_prepared(name, values, param_formats=formats, result_format=_BINARY)
        return preparing

    def _flush(self) -> None:
        pg = self._pg
        while pg.flush():
            select.select([], [pg.socket], [])

    def _results(self) -> list[pq.abc.PGresult]:
        """Every result up to the next sync point."""
        pg = self._pg
        results: list[pq.abc.PGresult] = []
        while True:
            if pg.is_busy():
                select.select([pg.socket], [], [])
                pg.consume_input()
                continue
            result = pg.get_result()
            if result is None:
                continue  # the end of one statement's results
            if result.status == _PIPELINE_SYNC:
                return results
            results.append(result)

    def _abandon(self) -> None:
        """After an interruption (a signal handler that raised, a lost server): cancel what runs, read and drop
        what the server still sends, and leave pipeline mode, so that the session stays usable (the transaction
        is then rolled back by the store)."""
        pg = self._pg
        if pg.pipeline_status == pq.PipelineStatus.OFF or self._conn.broken:
            return
        try:
            self._conn.cancel_safe()
            pg.pipeline_sync()  # a sync point of our own: the original one may not have been sent
            self._flush()
            for _ in range(2):  # the original sync point, if it was sent, then ours
                self._results()
                try:
                    pg.exit_pipeline_mode()  # refused while results are still due: read on to the next sync
                    return
                except psycopg.OperationalError:
                    continue
        except psycopg.Error:
            pass  # the connection is lost: the store says so at its next statement
