"""``cdcapp dlq``: the dead-letter topic, listed, shown and replayed.

A letter (``cdcapp.runtime.dlq``) keeps the original key and value and where they were read
(topic, partition, offset). A letter's id is where it sits in the dead-letter topic,
``<partition>:<offset>``: stable, whatever arrives later.

Replay sends each chosen letter's original record back to its original topic and partition, with
its key, so that it is processed again once its cause is fixed (a spec that gained a table, a
column widened by hand). Every step of the pipeline is idempotent, so a letter replayed twice, or
one that another pipeline on the same topic had processed, is only a duplicate. Still, each replay
is recorded (``<prefix>.dlq.replayed``, by letter id), and a replay skips the letters sent back
before unless asked again. The record sent back carries its replay count in a header; if it fails
again at the step that failed it, its new letter says how often it was replayed. Letters of the
``clickhouse`` stage (rows ClickHouse refused) have no partition of their own: they go to the
sink partition of their row's key, as the stages send them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import orjson

from cdcapp.kafka_admin import (TopicSpec, create_missing_topics, dlq_topic, end_offsets, read_latest, read_topic,
                                replayed_topic)
from cdcapp.model.messages import REPLAYS_HEADER, decode_sink_batch, partition_of

#: values inside an error text (quoted strings, numbers), left out so that letters group by cause
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


@dataclass(frozen=True)
class Letter:
    id: str
    stage: str
    error: str
    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    ts_ms: int
    #: how often its record had been replayed when it failed this time
    replays: int = 0
    #: where ``cdcapp dlq replay`` sent it back ("topic[partition]@offset at time"), if it did
    replayed: str | None = None

    @classmethod
    def parse(cls, record: Any) -> "Letter":
        body = orjson.loads(record.value)
        return cls(
            id=f"{record.partition}:{record.offset}",
            stage=str(body.get("stage")),
            error=str(body.get("error")),
            topic=str(body.get("topic")),
            partition=body.get("partition"),
            offset=body.get("offset"),
            key=_b64(body.get("key_b64")),
            value=_b64(body.get("value_b64")),
            ts_ms=int(body.get("ts_ms") or record.timestamp or 0),
            replays=int(body.get("replays") or 0),
        )

    @property
    def cause(self) -> str:
        """The error with its values left out: what letters of one cause share."""
        return _VALUES.sub("…", self.error)[:200]

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    def decoded(self) -> dict[str, Any]:
        """The letter with its key and value shown as JSON where they are JSON."""
        return {"id": self.id, "stage": self.stage, "error": self.error, "topic": self.topic,
                "partition": self.partition, "offset": self.offset, "dead-lettered at": f"{self.when} UTC",
                "replays before": self.replays, "replayed": self.replayed,
                "key": _readable(self.key), "value": _readable(self.value)}


def _b64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def _readable(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "backslashreplace")


async def read_letters(bootstrap: str, internal_prefix: str) -> list[Letter]:
    """The pipeline's letters, oldest first, each with its replay record if it was replayed."""
    replayed = {key.decode(): value.decode() for key, value in
                (await read_latest(bootstrap, replayed_topic(internal_prefix))).items()}
    letters = [Letter.parse(record) async for record in read_topic(bootstrap, dlq_topic(internal_prefix))]
    letters = [replace(letter, replayed=replayed.get(letter.id)) for letter in letters]
    return sorted(letters, key=lambda letter: (letter.ts_ms, letter.id))


@dataclass
class Group:
    stage: str
    cause: str
    count: int
    oldest: Letter
    newest: Letter
    replayed: int = 0


def group(letters: Iterable[Letter]) -> list[Group]:
    groups: dict[tuple[str, str], Group] = {}
    for letter in letters:
        found = groups.get((letter.stage, letter.cause))
        if found is None:
            groups[letter.stage, letter.cause] = Group(letter.stage, letter.cause, 1, letter, letter,
                                                       int(letter.replayed is not None))
            continue
        found.count += 1
        found.replayed += letter.replayed is not None
        if letter.ts_ms < found.oldest.ts_ms:
            found.oldest = letter
        if letter.ts_ms >= found.newest.ts_ms:
            found.newest = letter
    return sorted(groups.values(), key=lambda g: (-g.count, g.stage, g.cause))


@dataclass(frozen=True)
class Filter:
    stage: str | None = None
    error: str | None = None
    topic: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __call__(self, letter: Letter) -> bool:
        return ((self.stage is None or letter.stage == self.stage)
                and (self.error is None or self.error.lower() in letter.error.lower())
                and (self.topic is None or letter.topic == self.topic)
                and (self.since_ms is None or letter.ts_ms >= self.since_ms)
                and (self.until_ms is None or letter.ts_ms <= self.until_ms))


def parse_time(text: str | None) -> int | None:
    """An ISO date or time (UTC unless it says otherwise) -> epoch milliseconds."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def destination(letter: Letter, partitions: Callable[[str], int]) -> tuple[str, int | None]:
    """Where a letter's record goes back to: its topic, and the partition that keeps its order."""
    if letter.partition is not None:
        return letter.topic, letter.partition
    if letter.stage == "clickhouse" and letter.value is not None:
        (row,) = decode_sink_batch(letter.value)
        return letter.topic, partition_of(row.sink_key, partitions(letter.topic))
    return letter.topic, None


async def replay(bootstrap: str, internal_prefix: str, letters: list[Letter], on_sent: Callable[[Letter], None],
                 replication_factor: int = 1) -> int:
    """Send the letters' records back, in the order given, each with its replay count, and record
    each as replayed once the broker has it; the number sent."""
    from aiokafka import AIOKafkaProducer

    counts: dict[str, int] = {}

    def partitions(topic: str) -> int:
        return counts[topic]

    for topic in {letter.topic for letter in letters}:
        counts[topic] = len(await end_offsets(bootstrap, [topic]))
    record_topic = replayed_topic(internal_prefix)
    await create_missing_topics(bootstrap, [TopicSpec(record_topic, 1, replication_factor, {"cleanup.policy": "compact"})])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for letter in letters:
            topic, partition = destination(letter, partitions)
            sent = await producer.send_and_wait(topic, letter.value, key=letter.key, partition=partition,
                                                headers=[(REPLAYS_HEADER, str(letter.replays + 1).encode())])
            at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            await producer.send_and_wait(record_topic, f"{topic}[{sent.partition}]@{sent.offset} at {at} UTC".encode(),
                                         key=letter.id.encode())
            on_sent(letter)
    finally:
        await producer.stop()
    return len(letters)
