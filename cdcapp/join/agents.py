"""Stage 2: one agent per entity runs ``EntityStage`` over its changelog-backed tables.

Each entity has two Faust tables partitioned like its stage topic: ``<entity>-state`` (row,
foreign keys, parents' views, versions) and ``<entity>-subscribers`` (children pointing at it).
Both are read and written only for the key of the event being processed, so every lookup is
partition-local. Values are orjson bytes: the RocksDB store keeps them as they are.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson

from cdcapp.dlq import send_dead_letter
from cdcapp.join.engine import EntityStage, Send, SinkRow
from cdcapp.metrics import EVENTS
from cdcapp.spec import Spec
from cdcapp.topics import Topics

log = logging.getLogger(__name__)


class RawBytesTable(faust.Table):
    """A table of bytes kept as they are, in the store and in the changelog.

    Faust derives a table's serializers from its key/value types and picks "json" for bytes;
    the changelog topic is built from them early, so they must be right from the constructor on.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"


def _table(app: faust.App, name: str, partitions: int) -> faust.TableT:
    table = RawBytesTable(app, name=name, partitions=partitions, key_type=bytes, value_type=bytes,
                          beacon=app.tables.beacon)
    return app.tables.add(table)


def sink_message(row: SinkRow) -> tuple[bytes, bytes]:
    key = f"{row.table}|{row.key}".encode()
    return key, orjson.dumps({"table": row.table, "row": row.row, "ts": row.ts_ms})


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
        async for event in stream.events():
            raw_key: bytes = event.key
            try:
                message: dict[str, Any] = orjson.loads(event.value)
                state_bytes = tables.state.get(raw_key)
                subs_bytes = tables.subscribers.get(raw_key)
                result = stage.process(
                    raw_key.decode(),
                    message,
                    orjson.loads(state_bytes) if state_bytes is not None else None,
                    orjson.loads(subs_bytes) if subs_bytes is not None else {},
                )
            except Exception as exc:  # noqa: BLE001 - a poison message must not stop the partition
                await send_dead_letter(topics.dlq, event, f"stage.{stage.entity}", exc)
                continue
            EVENTS.labels(stage.entity, message["t"], result.outcome).inc()
            if result.outcome == "stale":
                continue
            if result.state is not None:
                tables.state[raw_key] = orjson.dumps(result.state)
            if message["t"] in ("sub", "unsub"):
                if result.subscribers:
                    tables.subscribers[raw_key] = orjson.dumps(result.subscribers)
                elif subs_bytes is not None:
                    del tables.subscribers[raw_key]
            for out in result.outputs:
                if isinstance(out, Send):
                    await topics.send(topics.stage_names[out.entity], out.key.encode(), orjson.dumps(out.message))
                else:
                    await topics.send(topics.sink_name, *sink_message(out))
