"""The corrections of ``cdcapp.runtime.faust``, each on the app's real (unstarted) consumer or
producer, and their scoping to this app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from aiokafka.structs import ConsumerRecord
from faust.types.tuples import ConsumerMessage

from cdcapp.runtime.app import CdcApp, create_app
from cdcapp.runtime.faust import pinned
from cdcapp.runtime.faust.buffer import ChangelogBuffer
from cdcapp.runtime.faust.bulk import BulkMessage, Delivered, bulk_message
from cdcapp.runtime.faust.consumer import Consumer
from cdcapp.runtime.faust.fetch import ReadOffsets
from cdcapp.runtime.faust.producer import Producer
from cdcapp.runtime.faust.seek import uncommitted_stream_partitions
from cdcapp.runtime.metrics import STALE_DELIVERIES
from tests.unit.conftest import unit_settings

TOPIC = "cdcapp.unit.acking"
TP0 = TP(TOPIC, 0)


@pytest.fixture
def consumer(cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[Consumer]:
    consumer = cdc_app.consumer
    monkeypatch.setattr(cdc_app.topics, "acks_enabled_for", lambda topic: topic == TOPIC)
    monkeypatch.setattr(cdc_app, "consumer_generation_id", 7)
    consumer._acked.pop(TP0, None)
    consumer._acked_index.pop(TP0, None)
    consumer._committed_offset[TP0] = 100
    yield consumer
    consumer._acked.pop(TP0, None)
    consumer._acked_index.pop(TP0, None)
    consumer._committed_offset.pop(TP0, None)
    consumer._read_offset.pop(TP0, None)


def message(offset: int, *, generation: int = 7, tracked: bool = True, topic: str = TOPIC,
            consumer: Consumer | None = None) -> ConsumerMessage:
    """A message as the fetch loop delivers it now (``consumer``: with its partition's seek serial)."""
    tp = TP(topic, 0)
    msg = Delivered(topic, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=tp, generation_id=generation)
    msg.seek_serial = consumer._read_offset.serial.get(tp) if consumer is not None else None
    msg.tracked = tracked
    return msg


def without_credit() -> float:
    return STALE_DELIVERIES.labels("ack_without_credit")._value.get()


# ------------------------------------------------------------------ scoping
def test_the_corrections_are_the_apps_own_classes_not_faust_patched(cdc_app: CdcApp) -> None:
    assert type(cdc_app.consumer) is Consumer and type(cdc_app.producer) is Producer
    assert isinstance(cdc_app.producer.buffer, ChangelogBuffer)
    assert faust_aiokafka.Consumer.ack is not Consumer.ack
    assert faust_aiokafka.Consumer._drain_messages is not Consumer._drain_messages
    assert faust_aiokafka.Producer.flush is not Producer.flush


# ------------------------------------------------------------------ acks
def test_a_processed_message_is_credited_towards_the_commit(consumer: Consumer) -> None:
    assert consumer.ack(message(100, consumer=consumer))
    assert consumer._new_offset(TP0) == 101


def test_a_message_a_stream_skipped_gets_no_credit(consumer: Consumer) -> None:
    """Streams skip (and ack) a message that arrives while flow is suspended for a rebalance."""
    consumer.ack(message(100, consumer=consumer))
    before = without_credit()
    assert not consumer.ack(message(101, tracked=False, consumer=consumer))
    assert without_credit() == before + 1
    consumer.ack(message(102, consumer=consumer))
    assert consumer._new_offset(TP0) == 101, "the commit stops below the skipped offset"


def test_a_message_of_an_older_generation_gets_no_credit(consumer: Consumer) -> None:
    """After a rebalance the partition is re-read from the commit: the old delivery must not count."""
    assert not consumer.ack(message(100, generation=6, consumer=consumer))
    assert consumer._new_offset(TP0) is None


def test_a_message_delivered_before_a_seek_of_its_partition_gets_no_credit(consumer: Consumer) -> None:
    """Acked after the seek (it was still in a batch), it is read again: the new delivery counts."""
    in_flight = message(100, consumer=consumer)
    consumer._read_offset[TP0] = 100
    assert not consumer.ack(in_flight)
    assert consumer._new_offset(TP0) is None
    assert consumer.ack(message(100, consumer=consumer))
    assert consumer._new_offset(TP0) == 101


def test_a_seek_takes_back_the_credit_of_the_offsets_it_reads_again(consumer: Consumer) -> None:
    """100-105 processed; a seek to 102 replays 102 and 103 only, then the partition is given up:
    the commit must stop at 104, or the new owner skips what 104 and 105 did after the replay."""
    for offset in range(100, 106):
        assert consumer.ack(message(offset, consumer=consumer))
    consumer._read_offset[TP0] = 102
    assert consumer._acked[TP0] == [100, 101] and consumer._acked_index[TP0] == {100, 101}
    for offset in (102, 103):
        assert consumer.ack(message(offset, consumer=consumer))
    assert consumer._new_offset(TP0) == 104


def test_a_seek_to_the_beginning_takes_back_all_credit(consumer: Consumer) -> None:
    consumer.ack(message(100, consumer=consumer))
    consumer._read_offset[TP0] = None
    assert consumer._new_offset(TP0) is None and not consumer._acked_index[TP0]


def test_topics_without_acks_are_left_to_faust(consumer: Consumer) -> None:
    before = without_credit()
    other = message(5, generation=6, tracked=False, topic="changelog")
    consumer.ack(other)
    assert other.acked and without_credit() == before, "Faust's own ack, not the credit rule"


# ------------------------------------------------------------------ fetch
def test_every_write_but_a_delivery_is_a_seek_with_a_new_serial() -> None:
    offsets = ReadOffsets()
    assert offsets[TP0] is None
    offsets.update({TP0: 10})
    after_seek = offsets.serial[TP0]
    offsets.delivered(TP0, 11)
    assert offsets[TP0] == 11 and offsets.serial[TP0] == after_seek, "the fetch loop's own write"
    offsets[TP0] = 5
    assert offsets.serial[TP0] > after_seek
    previous = offsets.serial[TP0]
    offsets.pop(TP0)
    assert offsets.serial[TP0] > previous and offsets[TP0] is None


def record(offset: int, topic: str = TOPIC) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())


async def run_one_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offsets: list[int],
                        seek_during: int | None, bulk: bool = False) -> tuple[Consumer, list[Any], list[tuple[Any, int]]]:
    """Drive the fetch loop of a new app's consumer (a service of this test's event loop) over one
    fetch of ``offsets``; a seek to 5 lands while ``seek_during`` is delivered."""
    app = create_app(unit_settings(tmp_path))
    app.bulk_topics = frozenset({TOPIC}) if bulk else frozenset()
    consumer = app.consumer
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: topic == TOPIC)
    monkeypatch.setattr(app, "consumer_generation_id", 7)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    delivered: list[Any] = []
    seeks: list[tuple[Any, int]] = []

    async def wait_next_records(timeout: float) -> tuple[dict, None]:
        fetcher._stopped.set()
        return {TP0: [record(offset) for offset in offsets]}, None

    async def callback(msg: ConsumerMessage) -> None:
        delivered.append(msg)
        if msg.offset == seek_during:
            consumer._read_offset[TP0] = 5  # what a rebalance's seek to the committed offset does

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp, offset))

    monkeypatch.setattr(consumer, "_wait_next_records", wait_next_records)
    monkeypatch.setattr(consumer, "callback", callback)
    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0})
    monkeypatch.setattr(consumer, "highwater", lambda tp: 0)
    consumer._read_offset[TP0] = 9
    await consumer._drain_messages(fetcher)
    return consumer, delivered, seeks


async def test_records_fetched_before_a_seek_are_withheld_and_the_partition_seeked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, delivered, seeks = await run_one_fetch(tmp_path, monkeypatch, [10, 11, 12], seek_during=10)
    assert [m.offset for m in delivered] == [10], "11 and 12 were fetched before the seek: not delivered"
    assert consumer._read_offset[TP0] == 5, "the seek is not undone by the delivery of 10"
    assert seeks == [(TP0, 5)]
    delivered[0].tracked = True
    assert not consumer.ack(delivered[0]), "10 was delivered before the seek: it is read again"


async def test_a_delivery_without_a_seek_earns_credit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, delivered, _ = await run_one_fetch(tmp_path, monkeypatch, [10, 11], seek_during=None)
    for msg in delivered:
        msg.tracked = True
        assert consumer.ack(msg)
    assert consumer._new_offset(TP0) == 12


async def test_without_a_seek_every_record_is_delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, delivered, seeks = await run_one_fetch(tmp_path, monkeypatch, [10, 11, 12], seek_during=None)
    assert [m.offset for m in delivered] == [10, 11, 12] and consumer._read_offset[TP0] == 12 and not seeks


async def test_a_bulk_topic_gets_its_run_as_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, delivered, seeks = await run_one_fetch(tmp_path, monkeypatch, [10, 11, 12], seek_during=None,
                                                     bulk=True)
    (message,) = delivered
    assert isinstance(message, BulkMessage) and (message.first_offset, message.offset) == (10, 12)
    assert [r.offset for r in message.records] == [10, 11, 12] and consumer._read_offset[TP0] == 12


def test_acking_a_bulk_message_credits_its_whole_run(consumer: Consumer) -> None:
    run = bulk_message(consumer, TP0, [record(offset) for offset in (100, 101, 102)])
    run.tracked, run.seek_serial = True, consumer._read_offset.serial.get(TP0)
    assert consumer.ack(run)
    assert consumer._new_offset(TP0) == 103


def test_a_bulk_message_of_an_older_generation_gets_no_credit(consumer: Consumer) -> None:
    run = bulk_message(consumer, TP0, [record(offset) for offset in (100, 101)])
    run.tracked, run.generation_id, run.seek_serial = True, 6, consumer._read_offset.serial.get(TP0)
    assert not consumer.ack(run)
    assert consumer._new_offset(TP0) is None


# ------------------------------------------------------------------ seek
def test_only_uncommitted_stream_partitions_are_sent_to_their_beginning(consumer: Consumer) -> None:
    changelog = TP("cdcapp-unit-x-changelog", 0)
    committed = {TP0: None, TP(TOPIC, 1): 0, TP(TOPIC, 2): 17, changelog: None}
    found = {(tp.topic, tp.partition) for tp in uncommitted_stream_partitions(consumer, committed)}
    assert found == {(TOPIC, 0), (TOPIC, 1)}


# ------------------------------------------------------------------ buffer
async def test_the_changelog_buffer_counts_and_waits_for_the_message_being_handed_over(cdc_app: CdcApp) -> None:
    buffer = ChangelogBuffer()
    buffer.app = cdc_app
    handed_over = asyncio.Event()
    release = asyncio.Event()

    async def publish_message(fut: Any, wait: bool) -> None:
        handed_over.set()
        await release.wait()

    await buffer.start()
    try:
        buffer.put(SimpleNamespace(message=SimpleNamespace(channel=SimpleNamespace(publish_message=publish_message))))
        await handed_over.wait()
        assert buffer.pending.empty() and buffer.size == 1, "off the queue, not yet with aiokafka"
        flush = asyncio.ensure_future(buffer.flush())
        await asyncio.sleep(0.05)
        assert not flush.done()
        release.set()
        await asyncio.wait_for(flush, 5)
        assert buffer.size == 0
    finally:
        await buffer.stop()


# ------------------------------------------------------------------ fetch wait
async def test_the_kafka_consumer_waits_at_the_broker_as_configured_not_faust_s_1500_ms(tmp_path: Path) -> None:
    app = create_app(unit_settings(tmp_path).model_copy(update={"fetch_max_wait_ms": 37}))
    thread = app.consumer._new_consumer_thread()
    kafka_consumer = thread._create_worker_consumer(app.transport)
    try:
        assert kafka_consumer._fetch_max_wait_ms == 37
    finally:
        await kafka_consumer.stop()


# ------------------------------------------------------------------ pinned code
def test_the_installed_faust_is_the_code_the_corrections_were_written_for() -> None:
    pinned.check()


def test_a_worker_refuses_to_start_on_a_faust_whose_patched_functions_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport import consumer as faust_consumer

    def ack(self: Any, message: Any) -> bool:  # a "new release" of Consumer.ack
        return True

    monkeypatch.setattr(faust_consumer.Consumer, "ack", ack)
    with pytest.raises(pinned.FaustChanged, match=r"faust-streaming 0\.15\.3.*differs in: faust\.transport\.consumer:Consumer\.ack \("):
        create_app(unit_settings(tmp_path))


async def test_a_recovery_seek_leaves_out_partitions_without_an_offset_or_no_longer_assigned(
        consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebalance during table recovery: the old round seeks standbys the new assignment rewrote."""
    seeks: list[dict] = []

    async def thread_seek_wait(partitions: dict) -> None:
        seeks.append(dict(partitions))

    kept, added, gone = TP("x-changelog", 0), TP("x-changelog", 1), TP("x-changelog", 2)
    monkeypatch.setattr(consumer._thread, "seek_wait", thread_seek_wait)
    monkeypatch.setattr(consumer, "assignment", lambda: {kept, added})
    await consumer.seek_wait({kept: 5, added: None, gone: 7})
    assert seeks == [{kept: 5}]
