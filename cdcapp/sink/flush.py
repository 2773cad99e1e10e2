"""Flushing the sink buffer: insert every table of a batch, retried until stored, then acknowledge.

The order is the sink's half of the checkpoint (``cdcapp.runtime.checkpoint``): a token is handed
to ``ack`` only after every insert of its batch returned, so a crash replays at most unacknowledged
rows, which ReplacingMergeTree absorbs (same ``_version``). Time and sleeping are injected.
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
    ) -> None:
        self.writer = writer
        self.buffer = buffer
        self.policy = policy
        self.backoff = backoff
        self.ack = ack
        self.clock = clock
        self.sleep = sleep
        self.on_error = on_error
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

    async def flush(self) -> Flushed[Token] | None:
        async with self.lock:
            if not self.buffer.tokens:
                return None
            batch = self.buffer.take()
            self.policy.flushed()
            started = self.clock()
            await self._insert_until_stored(batch)
            stored_at = self.clock()
            self.last_flush_at = stored_at
            self.rows_inserted += batch.rows
            await self.ack(batch.tokens)
            return Flushed(batch, stored_at - started, stored_at)

    async def _insert_until_stored(self, batch: Batch[Token]) -> None:
        attempt = 0
        while True:
            try:
                await self.writer.insert(batch.tables)
            except Exception as exc:  # noqa: BLE001 - every failure is retried; acking would lose rows
                attempt += 1
                delay = self.backoff.delay()
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.on_error(exc, attempt, delay)
                await self.sleep(delay)
                continue
            self.backoff.reset()
            self.last_error = None
            return
