"""The dead-letter topic: every event that cannot be processed goes here with the reason.

A dead letter keeps the original bytes (base64) and where they came from (topic, partition,
offset), so that it can be inspected and put back on its topic once the cause is fixed. Nothing
is dropped silently.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import faust
import orjson

from cdcapp.model.messages import SinkRow, encode_batch, replays_of
from cdcapp.runtime.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)


def dead_letter(stage: str, error: BaseException | str, *, topic: str, partition: int | None, offset: int | None,
                key: bytes | None, value: bytes | None, replays: int = 0) -> dict[str, Any]:
    return {
        "stage": stage,
        "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value).decode() if value is not None else None,
        "ts_ms": int(time.time() * 1000),
        "replays": replays,
    }


async def send_dead_letter(dlq: faust.TopicT, message: Any, stage: str, error: BaseException | str,
                           value: bytes | None = None) -> None:
    """Dead-letter a Kafka message or record (anything with topic, partition, offset, key and
    value), or only ``value`` in its name: the messages of a batch record that failed."""
    letter = dead_letter(stage, error, topic=message.topic, partition=message.partition, offset=message.offset,
                         key=message.key, value=message.value if value is None else value,
                         replays=replays_of(getattr(message, "headers", None)))
    log.warning("dead letter from %s at %s[%s]@%s: %s", stage, message.topic, message.partition,
                message.offset, letter["error"])
    # The error's type only: a label must not take every value an error text has.
    DEAD_LETTERS.labels(stage, type(error).__name__ if not isinstance(error, str) else error.split(":", 1)[0][:60]).inc()
    await dlq.send(key=message.key, value=orjson.dumps(letter))


async def send_refused_row(dlq: faust.TopicT, sink_topic: str, table: str, key: str, row: dict[str, Any],
                           error: str) -> None:
    """A row ClickHouse refused. Its value is a sink record holding just that row, so that putting
    it back on ``sink_topic`` once the cause is fixed stores it; it has no offset of its own (the
    sink buffer keeps the newest row per key, from any record)."""
    value = encode_batch([SinkRow(table, key, row, 0).encode()])
    letter = dead_letter("clickhouse", error, topic=sink_topic, partition=None, offset=None,
                         key=key.encode(), value=value)
    DEAD_LETTERS.labels("clickhouse", "refused").inc()
    await dlq.send(key=key.encode(), value=orjson.dumps(letter))

