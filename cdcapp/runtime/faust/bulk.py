"""Bulk delivery: the records of a source partition in one fetch, delivered as one message.

Debezium writes one Kafka record per row change, and Faust spends more per delivered record -
the fetch loop's wait for the callback, the conductor, the stream's event, its sensors, the
acknowledgement - than the pipeline spends decoding and shaping the change. For the topics the app
names bulk (the source topics), the fetch loop delivers each fetched run of consecutive records
of a partition as one ``BulkMessage``: its offset is the run's last, its ``records`` the records.
The agent handles them all; acknowledging the message acknowledges every offset of the run, under
the same credit rule as any message (``acks``). Other topics are delivered record by record,
exactly as Faust's ``getmany`` does, round-robin between partitions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage


class Delivered(ConsumerMessage):
    """A message as the fetch loop delivers it, with the seek serial of its partition at the
    delivery (``cdcapp.runtime.faust.acks``: only a delivery since the last seek earns credit)."""

    __slots__ = ("seek_serial",)

    seek_serial: int | None


class BulkMessage(Delivered):
    """Consecutive records of one partition, as one message whose offset is the last one's."""

    __slots__ = ("records", "first_offset")

    records: list[Any]
    first_offset: int


def single_message(consumer: Any, tp: TP, record: Any) -> Delivered:
    """Faust's ``_to_message``, as a ``Delivered``."""
    message = Delivered(
        record.topic, record.partition, record.offset,
        None if record.timestamp is None else record.timestamp / 1000.0, record.timestamp_type,
        record.headers, record.key, record.value, record.checksum, record.serialized_key_size,
        record.serialized_value_size, tp, generation_id=consumer.app.consumer_generation_id,
    )
    message.seek_serial = None
    return message


def bulk_message(consumer: Any, tp: TP, records: list[Any]) -> BulkMessage:
    last = records[-1]
    message = BulkMessage(
        last.topic, last.partition, last.offset, (last.timestamp or 0) / 1000.0, last.timestamp_type,
        None, None, None, None, 0, sum(r.serialized_value_size for r in records), tp,
        generation_id=consumer.app.consumer_generation_id,
    )
    message.records = records
    message.first_offset = records[0].offset
    message.seek_serial = None
    return message


async def fetch(consumer: Any, timeout: float, bulk_topics: frozenset[str]) -> AsyncIterator[tuple[TP, Any]]:
    """Faust's ``Consumer.getmany``, with the records of bulk topics delivered a partition at a time."""
    records, active_partitions = await consumer._wait_next_records(timeout)
    generation_id = consumer.app.consumer_generation_id
    if records is None or consumer.should_stop:
        return
    if not consumer.flow_active:
        try:
            await consumer.perform_seek()
        except Exception as exc:  # noqa: BLE001 - as Faust: the next fetch seeks again
            consumer.log.warning(f"exception performing seek when flow not active {exc}")
        return

    def deliverable(tp: TP) -> bool:
        return active_partitions is None or tp in active_partitions or tp in consumer._buffered_partitions

    singles = {}
    for tp, tp_records in records.items():
        if not tp_records or not deliverable(tp):
            continue
        if tp.topic not in bulk_topics:
            singles[tp] = tp_records
            continue
        if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
            return
        consumer.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
        yield tp, bulk_message(consumer, tp, tp_records)
    for tp, record in consumer.scheduler.iterate(singles):
        if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
            return
        consumer.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
        yield tp, single_message(consumer, tp, record)
