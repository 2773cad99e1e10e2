"""The consumer corrections in cdcapp.faust_fixes, on the app's real (unstarted) Faust consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from cdcapp.app import app
from cdcapp.faust_fixes import ReadOffsets, _note_failed_delivery

TOPIC = "cdcapp.unit.acking"
TP0 = TP(TOPIC, 0)


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Consumer]:
    consumer = app.consumer
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: topic == TOPIC)
    monkeypatch.setattr(app, "consumer_generation_id", 7)
    consumer._acked.pop(TP0, None)
    consumer._acked_index.pop(TP0, None)
    consumer._committed_offset[TP0] = 100
    yield consumer
    consumer._acked.pop(TP0, None)
    consumer._acked_index.pop(TP0, None)
    consumer._committed_offset.pop(TP0, None)


def message(offset: int, *, generation: int = 7, tracked: bool = True) -> ConsumerMessage:
    msg = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP0, generation_id=generation)
    msg.tracked = tracked
    return msg


def test_a_processed_message_is_credited_towards_the_commit(consumer: Consumer) -> None:
    assert consumer.ack(message(100))
    assert consumer._new_offset(TP0) == 101


def test_a_message_a_stream_skipped_gets_no_credit(consumer: Consumer) -> None:
    """Streams skip (and ack) a message that arrives while flow is suspended for a rebalance."""
    consumer.ack(message(100))
    skipped = message(101, tracked=False)
    assert not consumer.ack(skipped)
    assert skipped.acked, "acked, so nothing waits for it, but not committable"
    consumer.ack(message(102))
    assert consumer._new_offset(TP0) == 101, "the commit stops below the skipped offset"


def test_a_message_of_an_older_generation_gets_no_credit(consumer: Consumer) -> None:
    """After a rebalance the partition is re-read from the commit: the old delivery must not count."""
    assert not consumer.ack(message(100, generation=6))
    assert consumer._new_offset(TP0) is None


def test_topics_without_acks_are_left_to_faust(consumer: Consumer) -> None:
    other = ConsumerMessage("changelog", 0, 5, 0.0, 0, None, b"k", b"v", None, generation_id=6)
    consumer.ack(other)
    assert other.acked


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


def test_the_app_consumer_keeps_seek_serials() -> None:
    assert isinstance(app.consumer._read_offset, ReadOffsets)


async def test_a_send_kafka_refused_for_good_stops_the_next_commit() -> None:
    """The consumer flushes the producer before committing: that flush must fail, not pass."""
    producer = app.transport.create_producer()  # unstarted: an empty buffer, nothing to send
    await producer.flush()  # nothing lost yet: flushing is fine
    delivery: asyncio.Future = asyncio.get_running_loop().create_future()
    delivery.set_exception(KafkaTimeoutError())
    _note_failed_delivery(producer, delivery)
    with pytest.raises(ProducerSendError, match="refusing to commit"):
        await producer.flush()
