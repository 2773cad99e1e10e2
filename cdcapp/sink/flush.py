"""Flushing the sink buffer: insert every table of a batch, retried until stored, then acknowledge.

The order is the sink's half of the checkpoint (``cdcapp.runtime.checkpoint``): a token is handed
to ``ack`` only after every insert of its batch returned, so a crash replays at most unacknowledged
rows, which ReplacingMergeTree absorbs (same ``_version``). Time and sleeping are injected.

Tables are inserted one by one, and a retry resumes with the table that failed: those stored are
not inserted again. Errors are of two kinds (``Writer.is_data_error``). ClickHouse down, a
connection lost, a server busy: the table is retried with backoff, for as long as it takes. Rows
ClickHouse (or its driver) refuses as data: the rows are split in halves until each refused row
is alone; those go to ``dead_letter`` and the rest is stored, so no row can stop the sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from cdcapp.clickhouse.ddl import TableShape
from cdcapp.model.messages import SinkRow
from cdcapp.retry import Backoff
from cdcapp.sink.buffer import Batch, SinkBuffer, Token
from cdcapp.sink.policy import FlushPolicy

log = logging.getLogger(__name__)


class Writer(Protocol):
    async def insert(self, batches: list[tuple[TableShape, list[dict[str, Any]]]]) -> None: ...

    def is_data_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` refuses the rows themselves (retrying them cannot help)."""
        ...


#: (table, entity key, row, why) of a row ClickHouse refused
DeadLetter = Callable[[str, str, dict[str, Any], str], Awaitable[None]]


@dataclass
class Flushed(Generic[Token]):
    batch: Batch[Token]
    seconds: float
    stored_at: float


class Sink(Generic[Token]):
    def __init__(
        self,
        writer: Writer,
        buffer: SinkBuffer[Token],
        policy: FlushPolicy,
        backoff: Backoff,
        ack: Callable[[list[Token]], Awaitable[None]],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_error: Callable[[BaseException, int, float], None] = lambda exc, attempt, delay: None,
        dead_letter: DeadLetter,
    ) -> None:
        self.writer = writer
        self.buffer = buffer
        self.policy = policy
        self.backoff = backoff
        self.ack = ack
        self.clock = clock
        self.sleep = sleep
        self.on_error = on_error
        self.dead_letter = dead_letter
        self.rows_refused = 0
        self.lock = asyncio.Lock()
        self.last_flush_at: float | None = None
        self.last_error: str | None = None
        self.rows_inserted = 0

    def add(self, rows: list[SinkRow], token: Token) -> None:
        """The rows of one record; its token is acknowledged when they are stored."""
        self.buffer.add(rows, token)
        # An empty record still holds a token to acknowledge: it counts, so that age flushes it.
        self.policy.added(max(1, len(rows)), self.clock())

    def due(self) -> bool:
        return self.policy.due(self.clock())

    def seconds_until_due(self) -> float | None:
        return self.policy.seconds_until_due(self.clock())

    async def flush(self) -> Flushed[Token] | None:
        async with self.lock:
            if not self.buffer.tokens:
                return None
            batch = self.buffer.take()
            self.policy.flushed()
            started = self.clock()
            refused = self.rows_refused
            await self._insert_until_stored(batch)
            stored_at = self.clock()
            self.last_flush_at = stored_at
            self.rows_inserted += batch.rows - (self.rows_refused - refused)
            await self.ack(batch.tokens)
            return Flushed(batch, stored_at - started, stored_at)

    async def _insert_until_stored(self, batch: Batch[Token]) -> None:
        attempt = 0
        pending = [(shape, rows, keys) for (shape, rows), keys in zip(batch.tables, batch.keys)]
        while pending:
            shape, rows, keys = pending[0]
            try:
                await self._store(shape, rows, keys)
            except Exception as exc:  # noqa: BLE001 - every other failure is retried; acking would lose rows
                attempt += 1
                delay = self.backoff.delay()
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.on_error(exc, attempt, delay)
                await self.sleep(delay)
                continue
            pending.pop(0)
        self.backoff.reset()
        self.last_error = None

    async def _store(self, shape: TableShape, rows: list[dict[str, Any]], keys: list[str]) -> None:
        """Insert ``rows``; on a data error, halves until the refused rows are alone and dead-lettered.
        Any other error is raised (the caller retries the table; halves already stored are
        inserted again then, which ReplacingMergeTree absorbs)."""
        try:
            await self.writer.insert([(shape, rows)])
        except Exception as exc:
            if not self.writer.is_data_error(exc):
                raise
            if len(rows) == 1:
                log.error("ClickHouse refused a row of %s (key %s): %s: %s", shape.name, keys[0],
                          type(exc).__name__, exc)
                await self.dead_letter(shape.name, keys[0], rows[0], f"{type(exc).__name__}: {exc}")
                self.rows_refused += 1
                return
            half = len(rows) // 2
            await self._store(shape, rows[:half], keys[:half])
            await self._store(shape, rows[half:], keys[half:])
