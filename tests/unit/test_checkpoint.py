"""The checkpoint order of ``cdcapp.runtime.checkpoint``, one test per link:
sink insert -> ack -> changelog flush -> producer flush -> offset commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.exceptions import ProducerSendError
from faust.types import TP

from cdcapp.clickhouse.ddl import table_shapes
from cdcapp.model.messages import SinkRow
from cdcapp.model.spec import load_spec
from cdcapp.retry import Backoff
from cdcapp.runtime import checkpoint
from cdcapp.runtime.app import CdcApp
from cdcapp.runtime.faust.delivery import DeliveryWatch
from cdcapp.sink.buffer import SinkBuffer
from cdcapp.sink.flush import Sink
from cdcapp.sink.policy import FlushPolicy

SHAPES = table_shapes(load_spec())


def customer_row(i: int, version: int = 1) -> SinkRow:
    row = {"id": i, "email": "e", "name": "n", "country": "c", "city": "x", "created_at": "2024-01-01 00:00:00",
           "_source": "pg", "_version": version, "_is_deleted": 0}
    return SinkRow("dim_customer", f"pg|{i}", row, 0)


class FlakyWriter:
    def __init__(self, failures: int, log: list[str]) -> None:
        self.failures = failures
        self.log = log

    def is_data_error(self, exc: BaseException) -> bool:
        return False

    async def insert(self, batches: Any) -> None:
        if self.failures:
            self.failures -= 1
            self.log.append("insert failed")
            raise ConnectionError("ClickHouse is down")
        self.log.append(f"insert {sum(len(rows) for _, rows in batches)}")


async def refuse_nothing(table: str, key: str, row: dict, why: str) -> None:
    raise AssertionError(f"no row is refused here, not {key}")


async def test_sink_acks_only_after_its_insert_returned() -> None:
    log: list[str] = []
    slept: list[float] = []

    async def ack(tokens: list[str]) -> None:
        log.append(f"ack {tokens}")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    now = [100.0]
    sink = Sink(FlakyWriter(2, log), SinkBuffer(SHAPES), FlushPolicy(10, 0.5), Backoff(0.2, 30), ack,
                clock=lambda: now[0], sleep=sleep, dead_letter=refuse_nothing)
    sink.add([customer_row(1)], "e1")
    sink.add([customer_row(2)], "e2")
    assert not sink.due()
    now[0] += 0.5
    assert sink.due()
    flushed = await sink.flush()
    assert log == ["insert failed", "insert failed", "insert 2", "ack ['e1', 'e2']"]
    assert slept == [0.2, 0.4], "backoff between attempts, from the injected sleep"
    assert flushed is not None and flushed.batch.rows == 2 and sink.last_error is None


class RecordingBuffer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def flush(self) -> None:
        self.log.append("changelog")


async def test_changelogs_are_flushed_before_the_producer() -> None:
    log: list[str] = []

    async def flush_kafka() -> None:
        log.append("producer")

    await checkpoint.flush_before_commit(RecordingBuffer(log), flush_kafka, DeliveryWatch())
    assert log == ["changelog", "producer"]


async def test_a_send_kafka_refused_for_good_fails_the_checkpoint() -> None:
    watch = DeliveryWatch()
    delivery: asyncio.Future = asyncio.get_running_loop().create_future()
    watch.watch(delivery)
    delivery.set_exception(TimeoutError("no broker"))
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration

    async def flush_kafka() -> None:
        pass

    with pytest.raises(ProducerSendError, match="refusing to commit"):
        await checkpoint.flush_before_commit(RecordingBuffer([]), flush_kafka, watch)


async def test_the_consumer_commits_offsets_only_after_the_producer_flush(
        cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, log = cdc_app.consumer, []
    tp = TP("cdcapp.stage.customers", 0)

    async def flush() -> None:
        log.append("producer flush")

    async def commit(offsets: Any) -> bool:
        log.append(f"commit {dict(offsets)}")
        return True

    monkeypatch.setattr(cdc_app.producer, "flush", flush)
    monkeypatch.setattr(consumer, "_commit", commit)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(cdc_app.tables, "on_commit", lambda offsets: None)
    monkeypatch.setattr(cdc_app.monitor, "on_tp_commit", lambda offsets: None)
    assert await consumer._commit_offsets({tp: 42})
    assert log == ["producer flush", f"commit {{{tp!r}: 42}}"]
    consumer._committed_offset.pop(tp, None)


async def test_the_apps_producer_flush_is_the_checkpoint(cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer Faust flushes before committing runs ``flush_before_commit``."""
    calls: list[Any] = []

    async def recorded(*args: Any) -> None:
        calls.append(args)

    monkeypatch.setattr(checkpoint, "flush_before_commit", recorded)
    await cdc_app.producer.flush()
    assert calls and calls[0][0] is cdc_app.producer.buffer and calls[0][2] is cdc_app.producer.deliveries
