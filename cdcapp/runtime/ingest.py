"""Ingest: Debezium records -> ``chg`` stage messages, inside the stage agent (``runtime.stage``).

Each change is decoded and shaped (``cdcapp.debezium.shape``) into a ``chg`` message for its
entity key. The stage agent applies it at once when this worker holds the key's stage partition,
and otherwise sends it to the stage topic, to the worker that does. Tombstones carry nothing the
``d`` event before them did not, so they are counted and skipped; anything undecodable goes to
the dead-letter topic.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import faust

from cdcapp.debezium.decode import Change, DecodeError
from cdcapp.debezium.epochs import Epochs
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.messages import Message
from cdcapp.model.spec import Spec
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import SCHEMA_MISSING, SOURCE_EVENTS
from cdcapp.runtime.schema import SchemaSync
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)


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


class Ingest:
    """The stage messages of the source records an event carries, one source topic per entity."""

    def __init__(self, spec: Spec, topics: Topics, epochs: Epochs, schema: SchemaSync) -> None:
        self.dlq, self.epochs, self.schema = topics.dlq, epochs, schema
        ops = ("c", "u", "d", "r", "tombstone")
        #: source topic -> its entity's shaper, and the counter of each op
        self.by_topic: dict[str, tuple[ChangeShaper, dict[str, Any]]] = {}
        for entity in spec.entities:
            shaper = ChangeShaper(spec, entity)
            shaper.on_missing = SCHEMA_MISSING.labels
            self.by_topic[topics.sources[entity]] = (shaper, {op: SOURCE_EVENTS.labels(entity, op) for op in ops})

    async def messages(self, event: faust.EventT) -> list[Message]:
        shaper, counters = self.by_topic[event.message.topic]
        epochs, out = self.epochs, []
        counts = dict.fromkeys(counters, 0)
        # The fetch loop delivers a run of source records as one message (runtime/faust/bulk.py).
        for record in getattr(event.message, "records", None) or (event.message,):
            try:
                change = await decode_synced(shaper, self.schema, record.key, record.value)
                if change is None:
                    counts["tombstone"] += 1
                    continue
                if epochs:
                    change = replace(change, position=epochs.position(
                        change.source, record.topic, record.partition, record.offset, change.position))
                message = shaper.shape(change)
            except DecodeError as exc:
                await send_dead_letter(self.dlq, record, "ingest", exc)
                continue
            counts[change.op] += 1
            message["e"] = shaper.entity
            out.append(message)
        for op, count in counts.items():
            if count:
                counters[op].inc(count)
        return out
