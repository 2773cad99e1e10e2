"""Debezium change -> the pipeline's stage message, values canonical for the spec's column types.

Debezium's key bytes do not hash like the pipeline's keys, so every change is re-keyed to its
entity key ``<source>|<pk>`` (``cdcapp.model.messages``). The decoder has already put the spec's
columns in canonical form (``cdcapp.model.types``); other columns are kept in JSON form.
"""

from __future__ import annotations

from typing import Any

import orjson

from cdcapp.debezium.decode import UNAVAILABLE, Change, DecodeError, decode
from cdcapp.model import messages
from cdcapp.model.messages import UNAVAILABLE_MARK, Message, entity_key
from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType


class ChangeShaper:
    """Decoded change -> its ``chg`` stage message, keyed by its entity key."""

    def __init__(self, spec: Spec, entity: str) -> None:
        self.entity = entity
        self.key_columns = spec.entities[entity].key
        self.types: dict[str, ColumnType] = spec.column_types(entity)

    def decode(self, key: bytes | None, value: bytes | None) -> Change | None:
        """The change with the entity's columns already canonical for their types."""
        return decode(key, value, columns=self.types, pk_columns=self.key_columns)

    def shape(self, change: Change) -> Message:
        try:
            key_values = [self._canonical(c, change.key[c]) for c in self.key_columns]
        except KeyError as exc:
            raise DecodeError(f"key of {self.entity} lacks primary-key column {exc}") from None
        image = change.before if change.op == "d" else change.after
        if image is None and change.op != "d":
            raise DecodeError(f"{change.op!r} event for {self.entity} has no 'after' image")
        row = {c: self._canonical(c, v) for c, v in image.items()} if image is not None else None
        return messages.change(entity_key(change.source, key_values), change.op, row, change.position,
                               change.source_ts_ms, change.snapshot)

    def _canonical(self, column: str, value: Any) -> Any:
        if value is UNAVAILABLE:
            return UNAVAILABLE_MARK
        return value if column in self.types else _json_safe(value)


def _json_safe(value: Any) -> Any:
    """Columns the spec does not declare are kept, in whatever JSON form they take."""
    return orjson.loads(orjson.dumps(value, default=str))
