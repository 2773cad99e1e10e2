"""Kafka topic names and topic creation, shared by the pipeline and the SQLite relay."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def source_topic(prefix: str, table: str) -> str:
    """Where a source table's change events are: ``<source topic prefix>.<table>`` (Debezium's
    RegexRouter in the connector configs, and the SQLite relay, both write there)."""
    return f"{prefix}.{table}"


def epochs_topic(internal_prefix: str) -> str:
    """Where the pipeline's source epochs are (``cdcapp.debezium.epochs``): compacted, one partition."""
    return f"{internal_prefix}.epochs"


def notifications_topic(source: str) -> str:
    """Where a Debezium connector of the stack reports its snapshots (``notification.sink.topic.name``
    in debezium/<source>-connector.json)."""
    return f"cdcapp-notifications.{source}"


def stage_topic(internal_prefix: str) -> str:
    """The join stages (``cdcapp.runtime.stage``): batches of stage messages, each naming its entity."""
    return f"{internal_prefix}.stage"


def sink_topic(internal_prefix: str) -> str:
    """The rows for ClickHouse (``cdcapp.runtime.sink``): batches of sink rows."""
    return f"{internal_prefix}.sink"


def dlq_topic(internal_prefix: str) -> str:
    """The pipeline's dead letters (``cdcapp.runtime.dlq``)."""
    return f"{internal_prefix}.dlq"


def replayed_topic(internal_prefix: str) -> str:
    """Which dead letters ``cdcapp dlq replay`` sent back, and where (compacted, by letter id)."""
    return f"{internal_prefix}.dlq.replayed"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


async def create_missing_topics(bootstrap: str, topics: list[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet (an existing one is left as it is); returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = {t.name: t for t in topics if t.name not in existing}
        if missing:
            log.info("creating topics: %s", ", ".join(missing))
            try:
                await admin.create_topics([
                    NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=t.config or None)
                    for t in missing.values()
                ])
            except TopicAlreadyExistsError:
                pass  # another worker or relay created them first
        return list(missing)
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of those ``topics`` that exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Describing a missing topic would create it (the broker auto-creates topics).
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in topics if t in existing])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described if not t["error_code"] for p in t["partitions"]
    ]
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages of ``topics`` the consumer group has not committed yet (a partition without a
    commit counts from its start)."""
    ends = await end_offsets(bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
    return sum(max(0, end - max(0, done.get(tp, 0))) for tp, end in ends.items())


async def group_members(bootstrap: str, group: str) -> int:
    """Members the consumer group has now (0 once its last worker left or timed out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return sum(len(g["members"]) for response in groups for g in response.to_object()["groups"])


async def commit_offsets(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit ``offsets`` for ``group`` (no member of it may be running): where it starts reading."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if not offsets:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = {TopicPartition(t, p): offset for (t, p), offset in offsets.items()}
        consumer.assign(list(partitions))
        await consumer.commit(partitions)
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=120_000)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        for start in range(0, len(doomed), 50):
            await admin.delete_topics(doomed[start:start + 50], timeout_ms=120_000)
        return doomed
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, since: dict[tuple[str, int], int] | None = None) -> AsyncIterator[Any]:
    """Every record of ``topic`` up to its end now (from the offsets ``since`` where given),
    partition by partition interleaved as fetched (aiokafka ``ConsumerRecord``s: topic,
    partition, offset, timestamp, key, value). A missing topic reads as empty."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = await end_offsets(bootstrap, [topic])
    since = since or {}
    if not any(end > since.get(tp, 0) for tp, end in ends.items()):
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for (t, p), end in ends.items() if end > since.get((t, p), 0)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since.get((tp.topic, tp.partition), 0))
        remaining = {tp: ends[(tp.topic, tp.partition)] for tp in partitions}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                for record in records:
                    if record.offset < remaining.get(tp, 0):
                        yield record
                if records and records[-1].offset + 1 >= remaining[tp]:
                    del remaining[tp]
    finally:
        await consumer.stop()


async def read_latest(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The newest value of every key of a (compacted) ``topic``, read to its end; a key whose
    newest record is a tombstone is left out. A missing topic reads as empty."""
    latest: dict[bytes, bytes | None] = {}
    async for record in read_topic(bootstrap, topic):
        latest[record.key] = record.value
    return {key: value for key, value in latest.items() if value is not None}


async def produce_one(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    """Send one record and wait until the broker has it (all in-sync replicas)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
