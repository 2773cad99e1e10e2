"""Stage 1: Debezium topics -> stage topics, keyed for partition-local joins.

Debezium's JSON key bytes do not hash like the app's keys, so every change is decoded here,
its values put in canonical form (``cdcapp.chtypes``) and re-sent to its entity's stage topic
under the entity key ``<source>|<pk>``. Tombstones carry nothing the ``d`` event before them
did not, so they are counted and skipped; anything undecodable goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson

from cdcapp.chtypes import ColumnType, ValueTypeError
from cdcapp.decode.debezium import UNAVAILABLE, Change, DecodeError, decode
from cdcapp.dlq import send_dead_letter
from cdcapp.join.engine import UNAVAILABLE_MARK, change_message
from cdcapp.metrics import SOURCE_EVENTS
from cdcapp.spec import Spec, entity_key
from cdcapp.topics import Topics

log = logging.getLogger(__name__)


class ChangeShaper:
    """Decoded change -> (entity key, stage message), values canonical for the entity's types."""

    def __init__(self, spec: Spec, entity: str) -> None:
        self.entity = entity
        self.key_columns = spec.entities[entity].key
        self.types: dict[str, ColumnType] = spec.column_types(entity)
        self.type_names = dict(spec.entities[entity].columns)

    def decode(self, key: bytes | None, value: bytes | None) -> Change | None:
        return decode(key, value, column_types=self.type_names, pk_columns=self.key_columns)

    def shape(self, change: Change) -> tuple[str, dict[str, Any]]:
        try:
            key_values = [self._canonical(c, change.key[c]) for c in self.key_columns]
        except KeyError as exc:
            raise DecodeError(f"key of {self.entity} lacks primary-key column {exc}") from None
        image = change.before if change.op == "d" else change.after
        if image is None and change.op != "d":
            raise DecodeError(f"{change.op!r} event for {self.entity} has no 'after' image")
        row = {c: self._canonical(c, v) for c, v in image.items()} if image is not None else None
        return entity_key(change.source, key_values), change_message(change.op, row, change.position,
                                                                        change.source_ts_ms)

    def _canonical(self, column: str, value: Any) -> Any:
        if value is UNAVAILABLE:
            return UNAVAILABLE_MARK
        column_type = self.types.get(column)
        if column_type is None:
            return _json_safe(value)
        try:
            return column_type.canonical(value)
        except ValueTypeError as exc:
            raise DecodeError(f"{self.entity}.{column}: {exc}") from None


def _json_safe(value: Any) -> Any:
    """Columns the spec does not declare are kept, in whatever JSON form they take."""
    return orjson.loads(orjson.dumps(value, default=str))


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
            await topics.send(stage_topic, key.encode(), orjson.dumps(message))
