"""Stage 3, the sink agent: ``<prefix>.sink`` -> ClickHouse, acknowledging only what is stored.

The agent reads with acks off, hands each row to the pure ``Sink`` (buffer, flush policy, retries;
``cdcapp.sink``) with its event as the token, and flushes when the policy says so, checked on
every row and when the oldest buffered row is due. ``Sink`` acknowledges the events only after
their inserts returned.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from cdcapp.clickhouse.client import ClickHouse, pipeline_database
from cdcapp.clickhouse.ddl import table_shapes
from cdcapp.config import Settings
from cdcapp.model.messages import BadMessage, decode_sink_batch
from cdcapp.model.spec import Spec
from cdcapp.retry import Backoff
from cdcapp.runtime.dlq import send_dead_letter, send_refused_row
from cdcapp.runtime.metrics import (END_TO_END_LAG, SINK_BUFFERED, SINK_ERRORS, SINK_FLUSH_ROWS, SINK_FLUSH_SECONDS,
                                    SINK_LAST_FLUSH, SINK_ROWS, SINK_ROWS_COALESCED)
from cdcapp.runtime.schema import SchemaSync
from cdcapp.runtime.topics import Topics
from cdcapp.sink.buffer import BadSinkRow, SinkBuffer, UnknownColumns
from cdcapp.sink.flush import Flushed, Sink
from cdcapp.sink.policy import FlushPolicy

log = logging.getLogger(__name__)

EventSink = Sink[faust.EventT]


class StreamAcks:
    """Acknowledges flushed events on the sink agent's stream, known once the agent runs."""

    stream: faust.StreamT | None = None

    async def __call__(self, events: list[faust.EventT]) -> None:
        if self.stream is None:
            raise RuntimeError("the sink flushed events before its agent started")
        for event in events:
            await self.stream.ack(event)


def build_sink(settings: Settings, spec: Spec, acks: StreamAcks, topics: Topics) -> tuple[EventSink, ClickHouse]:
    clickhouse = ClickHouse(settings.resolved_clickhouse_url, spec, pipeline_database(settings, spec))

    async def refused(table: str, key: str, row: dict, why: str) -> None:
        await send_refused_row(topics.dlq, topics.sink_name, table, key, row, why)

    def on_error(exc: BaseException, attempt: int, delay: float) -> None:
        SINK_ERRORS.inc()
        log.error("ClickHouse insert failed (attempt %d), retrying in %.1fs: %s: %s",
                  attempt, delay, type(exc).__name__, exc)

    sink = Sink(clickhouse, SinkBuffer(table_shapes(spec)),
                FlushPolicy(settings.flush_rows, settings.flush_interval_ms / 1000),
                Backoff(0.2, settings.sink_retry_max_s), acks, clock=time.monotonic, on_error=on_error,
                dead_letter=refused)
    return sink, clickhouse


def _observe(sink: EventSink, flushed: Flushed[faust.EventT] | None) -> None:
    SINK_BUFFERED.set(len(sink.buffer))
    if flushed is None:
        return
    SINK_FLUSH_SECONDS.observe(flushed.seconds)
    SINK_FLUSH_ROWS.observe(flushed.batch.rows)
    log.info("flushed %d rows in %.0f ms: %s", flushed.batch.rows, flushed.seconds * 1000,
             ", ".join(f"{shape.name} {len(rows)}" for shape, rows in flushed.batch.tables))
    stored_at = time.time()
    SINK_LAST_FLUSH.set(stored_at)
    stored_at_ms = stored_at * 1000
    for (shape, rows), timestamps in zip(flushed.batch.tables, flushed.batch.timestamps):
        SINK_ROWS.labels(shape.name).inc(len(rows))
        lag = END_TO_END_LAG.labels(shape.name)
        for ts in timestamps:
            if ts:
                lag.observe(max(0.0, (stored_at_ms - ts) / 1000))
    SINK_ROWS_COALESCED.inc(flushed.batch.received - flushed.batch.rows)


async def _add(sink: EventSink, schema: SchemaSync, event: faust.EventT) -> None:
    rows = decode_sink_batch(event.value)
    try:
        sink.add(rows, event)
    except UnknownColumns as exc:
        # Schema sync added columns since this worker read the table (maybe on another worker).
        await schema.reread(exc.table)
        sink.add(rows, event)


def register(app: faust.App, topics: Topics, sink: EventSink, acks: StreamAcks, clickhouse: ClickHouse,
             schema: SchemaSync, check_interval_s: float) -> None:
    @app.agent(topics.sink, name="cdcapp.sink")
    async def store(stream: faust.StreamT) -> None:
        manual = stream.noack()
        acks.stream = manual
        async for event in manual.events():
            try:
                await _add(sink, schema, event)
            except (BadMessage, BadSinkRow) as exc:
                await send_dead_letter(topics.dlq, event.message, "sink", exc)
                await manual.ack(event)
                continue
            if sink.due():
                _observe(sink, await sink.flush())

    @app.task
    async def flush_when_old() -> None:
        # Wakes when the oldest row is due, not at the next tick of a fixed timer: a row waits the
        # policy's age, not up to a tick more. Empty, it looks again every check_interval_s.
        while True:
            wait = sink.seconds_until_due()
            await asyncio.sleep(check_interval_s if wait is None else min(wait, check_interval_s))
            SINK_BUFFERED.set(len(sink.buffer))
            if sink.due():
                _observe(sink, await sink.flush())

    @app.task
    async def connect_clickhouse() -> None:
        # Create tables and views before any row arrives; a ClickHouse that is down is retried
        # by the first flush instead.
        try:
            await clickhouse.connect()
        except Exception as exc:  # noqa: BLE001
            log.warning("ClickHouse not reachable at start (%s); the sink will retry", exc)
