"""Stage 1, the ingest agents: Debezium topics -> stage topics, keyed for partition-local joins.

Each change is decoded and shaped (``cdcapp.debezium.shape``) and re-sent to its entity's stage
topic under its entity key. Tombstones carry nothing the ``d`` event before them did not, so they
are counted and skipped; anything undecodable goes to the dead-letter topic.
"""

from __future__ import annotations

import logging

import faust

from cdcapp.debezium.decode import DecodeError
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.messages import encode_stage
from cdcapp.model.spec import Spec
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import SOURCE_EVENTS
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)


def register(app: faust.App, spec: Spec, topics: Topics) -> None:
    for entity in spec.entities:
        _register_source(app, topics, ChangeShaper(spec, entity))


def _register_source(app: faust.App, topics: Topics, shaper: ChangeShaper) -> None:
    source_topic, stage_topic = topics.sources[shaper.entity], topics.stage_names[shaper.entity]

    @app.agent(source_topic, name=f"cdcapp.ingest.{shaper.entity}")
    async def ingest(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                change = shaper.decode(event.key, event.value)
                if change is None:
                    SOURCE_EVENTS.labels(shaper.entity, "tombstone").inc()
                    continue
                key, message = shaper.shape(change)
            except DecodeError as exc:
                await send_dead_letter(topics.dlq, event, "ingest", exc)
                continue
            SOURCE_EVENTS.labels(shaper.entity, change.op).inc()
            await topics.send(stage_topic, key.encode(), encode_stage(message))
