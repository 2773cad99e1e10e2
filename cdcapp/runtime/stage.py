"""Stage 2, the join agents: one agent per entity runs ``EntityStage`` over its changelog-backed tables.

Each entity has two Faust tables partitioned like its stage topic: ``<entity>-state`` (row,
foreign keys, parents' views, versions) and ``<entity>-subscribers`` (children pointing at it).
Both are read and written only for the key of the event being processed, so every lookup is
partition-local. Values are orjson bytes: the RocksDB store keeps them as they are.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from cdcapp.join.apply import BytesStageStore, apply
from cdcapp.join.engine import EntityStage, Send
from cdcapp.model.messages import decode_stage, encode_sink, encode_stage
from cdcapp.model.spec import Spec
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import EVENTS
from cdcapp.runtime.tables import RawBytesTable
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)


def _table(app: faust.App, name: str, partitions: int) -> faust.TableT:
    table = RawBytesTable(app, name=name, partitions=partitions, key_type=bytes, value_type=bytes,
                          beacon=app.tables.beacon)
    return app.tables.add(table)


class StageTables:
    def __init__(self, app: faust.App, entity: str, partitions: int) -> None:
        self.state = _table(app, f"{entity}-state", partitions)
        self.subscribers = _table(app, f"{entity}-subscribers", partitions)


def register(app: faust.App, spec: Spec, topics: Topics, partitions: int) -> dict[str, StageTables]:
    tables = {}
    for entity in spec.entities:
        tables[entity] = StageTables(app, entity, partitions)
        _register_stage(app, topics, EntityStage(spec, entity), tables[entity])
    return tables


def _register_stage(app: faust.App, topics: Topics, stage: EntityStage, tables: StageTables) -> None:
    @app.agent(topics.stages[stage.entity], name=f"cdcapp.stage.{stage.entity}")
    async def join(stream: faust.StreamT) -> None:
        store = BytesStageStore(tables.state, tables.subscribers)
        async for event in stream.events():
            try:
                message: dict[str, Any] = decode_stage(event.value)
                result = apply(stage, store, event.key.decode(), message)
            except Exception as exc:  # noqa: BLE001 - a poison message must not stop the partition
                await send_dead_letter(topics.dlq, event, f"stage.{stage.entity}", exc)
                continue
            EVENTS.labels(stage.entity, message["t"], result.outcome).inc()
            for out in result.outputs:
                if isinstance(out, Send):
                    await topics.send(topics.stage_names[out.entity], out.key.encode(), encode_stage(out.message))
                else:
                    await topics.send(topics.sink_name, *encode_sink(out))
