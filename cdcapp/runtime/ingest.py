"""Stage 1, the ingest agents: Debezium topics -> stage topics, keyed for partition-local joins.

Each change is decoded and shaped (``cdcapp.debezium.shape``) into a ``chg`` message for its
entity key, and the messages of a batch of events go to the stage topic as one record per
partition. Tombstones carry nothing the ``d`` event before them did not, so they are counted and
skipped; anything undecodable goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import faust

from cdcapp.debezium.decode import DecodeError
from cdcapp.debezium.epochs import Epochs
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.messages import partition_of
from cdcapp.model.spec import Spec
from cdcapp.runtime.batching import each_batch
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import BATCH_EVENTS, SOURCE_EVENTS
from cdcapp.runtime.outbox import Outbox
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)

#: events per batch; each event is a fetched run of up to ``broker_max_poll_records`` source records
MAX_EVENTS = 8


def register(app: faust.App, spec: Spec, topics: Topics, partitions: int, linger_s: float, epochs: Epochs) -> None:
    for entity in spec.entities:
        _register_source(app, topics, ChangeShaper(spec, entity), partitions, linger_s, epochs)


def _register_source(app: faust.App, topics: Topics, shaper: ChangeShaper, partitions: int,
                     linger_s: float, epochs: Epochs) -> None:
    source_topic, stage_topic = topics.sources[shaper.entity], topics.stage_names[shaper.entity]
    ops = {op: SOURCE_EVENTS.labels(shaper.entity, op) for op in ("c", "u", "d", "r", "tombstone")}

    batch_events = BATCH_EVENTS.labels(f"ingest.{shaper.entity}")

    async def handle(events: list[faust.EventT]) -> None:
        batch_events.observe(len(events))
        outbox = Outbox(app.producer)
        for event in events:
            # The fetch loop delivers a run of source records as one message (runtime/faust/bulk.py).
            for record in getattr(event.message, "records", None) or (event.message,):
                try:
                    change = shaper.decode(record.key, record.value)
                    if change is None:
                        ops["tombstone"].inc()
                        continue
                    if epochs:
                        change = replace(change, position=epochs.position(
                            change.source, record.topic, record.partition, record.offset, change.position))
                    message = shaper.shape(change)
                except DecodeError as exc:
                    await send_dead_letter(topics.dlq, record, "ingest", exc)
                    continue
                ops[change.op].inc()
                await outbox.add(stage_topic, partition_of(message["k"], partitions), message)
        await outbox.flush()

    @app.agent(source_topic, name=f"cdcapp.ingest.{shaper.entity}")
    async def ingest(stream: faust.StreamT) -> None:
        await each_batch(stream, handle, MAX_EVENTS, linger_s)
