"""Stage 3: the sink topic -> ClickHouse, in batches, acknowledging only what is stored.

The agent reads ``<prefix>.sink`` with acks turned off, buffers rows per table, and flushes when
the ``FlushPolicy`` says so (size, or age of the oldest row, checked by the agent and by a timer).
A flush is one insert per table; a failed insert is retried with backoff for as long as it takes,
and the events are acked only after every insert of the flush returned. A crash therefore
replays at most the unacked rows, which ReplacingMergeTree absorbs (same ``_version``).

Checkpoint order, as in any sink of this kind: ClickHouse insert -> ack -> Faust commits the
contiguous acked offsets (after flushing its producer) every ``broker_commit_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from cdcapp.dlq import send_dead_letter
from cdcapp.metrics import END_TO_END_LAG, SINK_BUFFERED, SINK_ERRORS, SINK_FLUSH_SECONDS, SINK_ROWS
from cdcapp.sink.clickhouse import ClickHouseWriter
from cdcapp.sink.policy import FlushPolicy
from cdcapp.sink.schema import TableShape
from cdcapp.topics import Topics

log = logging.getLogger(__name__)


class BadSinkRow(ValueError):
    pass


@dataclass
class SinkBuffer:
    shapes: dict[str, TableShape]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timestamps: list[int] = field(default_factory=list)
    events: list[faust.EventT] = field(default_factory=list)

    def add(self, event: faust.EventT) -> None:
        message = orjson.loads(event.value)
        shape = self.shapes.get(message.get("table"))
        if shape is None:
            raise BadSinkRow(f"unknown table {message.get('table')!r}")
        row = message["row"]
        missing = [c for c in shape.columns if c not in row]
        if missing:
            raise BadSinkRow(f"row for {shape.name} lacks columns {missing}")
        self.rows.setdefault(shape.name, []).append(row)
        self.timestamps.append(message.get("ts", 0))
        self.events.append(event)

    def take(self) -> tuple[list[tuple[TableShape, list[dict[str, Any]]]], list[int], list[faust.EventT]]:
        batches = [(self.shapes[name], rows) for name, rows in self.rows.items()]
        taken = batches, self.timestamps, self.events
        self.rows, self.timestamps, self.events = {}, [], []
        return taken


class Sink:
    def __init__(self, writer: ClickHouseWriter, shapes: dict[str, TableShape], policy: FlushPolicy,
                 retry_max_s: float) -> None:
        self.writer = writer
        self.buffer = SinkBuffer(shapes)
        self.policy = policy
        self.retry_max_s = retry_max_s
        self.stream: faust.StreamT | None = None
        self.lock = asyncio.Lock()
        self.last_flush_at: float | None = None
        self.last_error: str | None = None
        self.rows_inserted = 0

    def add(self, event: faust.EventT) -> None:
        self.buffer.add(event)
        self.policy.added(1, time.monotonic())
        SINK_BUFFERED.set(self.policy.rows)

    def due(self) -> bool:
        return self.policy.due(time.monotonic())

    async def flush(self) -> None:
        async with self.lock:
            if not self.buffer.events:
                return
            batches, timestamps, events = self.buffer.take()
            self.policy.flushed()
            await self._insert_until_stored(batches)
            stored_at_ms = time.time() * 1000
            for ts in timestamps:
                if ts:
                    END_TO_END_LAG.observe(max(0.0, (stored_at_ms - ts) / 1000))
            for shape, rows in batches:
                SINK_ROWS.labels(shape.name).inc(len(rows))
                self.rows_inserted += len(rows)
            stream = self.stream
            if stream is None:
                raise RuntimeError("the sink flushed events before its agent started")
            for event in events:
                await stream.ack(event)
            SINK_BUFFERED.set(self.policy.rows)

    async def _insert_until_stored(self, batches: list[tuple[TableShape, list[dict[str, Any]]]]) -> None:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                await self.writer.insert(batches)
            except Exception as exc:  # noqa: BLE001 - every failure is retried; acking would lose rows
                attempt += 1
                delay = min(self.retry_max_s, 0.2 * 2 ** min(attempt, 10))
                self.last_error = f"{type(exc).__name__}: {exc}"
                SINK_ERRORS.inc()
                log.error("ClickHouse insert failed (attempt %d), retrying in %.1fs: %s",
                          attempt, delay, self.last_error)
                await asyncio.sleep(delay)
                continue
            SINK_FLUSH_SECONDS.observe(time.perf_counter() - started)
            self.last_flush_at = time.time()
            self.last_error = None
            return


def register(app: faust.App, topics: Topics, sink: Sink, check_interval_s: float) -> None:
    @app.agent(topics.sink, name="cdcapp.sink")
    async def store(stream: faust.StreamT) -> None:
        manual = stream.noack()
        sink.stream = manual
        async for event in manual.events():
            try:
                sink.add(event)
            except (ValueError, KeyError, TypeError) as exc:  # BadSinkRow and JSON errors are ValueErrors
                await send_dead_letter(topics.dlq, event, "sink", exc)
                await manual.ack(event)
                continue
            if sink.due():
                await sink.flush()

    @app.timer(interval=check_interval_s, name="cdcapp.sink.flush-timer")
    async def flush_when_old() -> None:
        if sink.due():
            await sink.flush()

    @app.task
    async def connect_clickhouse() -> None:
        # Create tables and views before any row arrives; a ClickHouse that is down is retried
        # by the first flush instead.
        try:
            await sink.writer.connect()
        except Exception as exc:  # noqa: BLE001
            log.warning("ClickHouse not reachable at start (%s); the sink will retry", exc)
