"""Stage 1, the ingest agent: Debezium topics -> the stage topic, keyed for partition-local joins.

One agent reads every entity's source topic. Each change is decoded and shaped
(``cdcapp.debezium.shape``) into a ``chg`` message for its entity key, and the messages of a batch
of events, whatever their entities, go to the stage topic as one record per partition. Tombstones
carry nothing the ``d`` event before them did not, so they are counted and skipped; anything
undecodable goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import faust

from cdcapp.debezium.decode import Change, DecodeError
from cdcapp.debezium.epochs import Epochs
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.messages import partition_of
from cdcapp.model.spec import Spec
from cdcapp.runtime.batching import each_batch
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import BATCH_EVENTS, SCHEMA_MISSING, SOURCE_EVENTS
from cdcapp.runtime.outbox import Outbox
from cdcapp.runtime.schema import SchemaSync
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)

#: events per batch; each event is a fetched run of up to ``broker_max_poll_records`` source records
MAX_EVENTS = 8


def register(app: faust.App, spec: Spec, topics: Topics, partitions: int, linger_s: float, epochs: Epochs,
             schema: SchemaSync) -> None:
    shapers = {}
    for entity in spec.entities:
        shaper = ChangeShaper(spec, entity)
        shaper.on_missing = SCHEMA_MISSING.labels
        shapers[topics.sources[entity]] = shaper
    _register(app, topics, shapers, partitions, linger_s, epochs, schema)


async def decode_synced(shaper: ChangeShaper, schema: SchemaSync, key: bytes | None,
                        value: bytes | None) -> Change | None:
    """The change, with the columns its entity's mirrored tables lacked added to them first, and a
    column schema sync added widened when the source's type grew (``cdcapp.runtime.schema``)."""
    try:
        change = shaper.decode(key, value)
    except DecodeError as exc:
        column = exc.column
        if column is None or value is None:
            raise
        if column in shaper.spec_types:
            raise DecodeError(f"{exc} (the spec declares {shaper.spec_types[column].name} for {shaper.entity}."
                              f"{column}; if the source column's type changed, change the spec to match, restart "
                              "the workers and replay this dead letter: cdcapp dlq replay --stage ingest)") from exc
        why = await schema.widen(shaper, value, column)
        if why is not None:
            raise DecodeError(f"{exc}: {why}") from exc
        change = shaper.decode(key, value)
    if change is not None and value is not None:
        unknown = shaper.unknown_columns(change)
        if unknown:
            await schema.learn(shaper, value, unknown)
            change = shaper.decode(key, value)
    return change


def _register(app: faust.App, topics: Topics, shapers: dict[str, ChangeShaper], partitions: int,
              linger_s: float, epochs: Epochs, schema: SchemaSync) -> None:
    stage_topic = topics.stage_name
    # source topic -> its shaper, and the counter of each op of its entity
    ops = ("c", "u", "d", "r", "tombstone")
    by_topic = {topic: (shaper, {op: SOURCE_EVENTS.labels(shaper.entity, op) for op in ops})
                for topic, shaper in shapers.items()}
    batch_events = BATCH_EVENTS.labels("ingest")

    async def handle(events: list[faust.EventT]) -> None:
        batch_events.observe(len(events))
        outbox = Outbox(app.producer)
        for event in events:
            shaper, counts = by_topic[event.message.topic]
            # The fetch loop delivers a run of source records as one message (runtime/faust/bulk.py).
            for record in getattr(event.message, "records", None) or (event.message,):
                try:
                    change = await decode_synced(shaper, schema, record.key, record.value)
                    if change is None:
                        counts["tombstone"].inc()
                        continue
                    if epochs:
                        change = replace(change, position=epochs.position(
                            change.source, record.topic, record.partition, record.offset, change.position))
                    message = shaper.shape(change)
                except DecodeError as exc:
                    await send_dead_letter(topics.dlq, record, "ingest", exc)
                    continue
                counts[change.op].inc()
                message["e"] = shaper.entity
                await outbox.add(stage_topic, partition_of(message["k"], partitions), message)
        await outbox.flush()

    @app.agent(topics.source, name="cdcapp.ingest")
    async def ingest(stream: faust.StreamT) -> None:
        await each_batch(stream, handle, MAX_EVENTS, linger_s)
