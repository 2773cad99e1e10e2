"""Debezium change -> the pipeline's stage message, values canonical for the spec's column types.

Debezium's key bytes do not hash like the pipeline's keys, so every change is re-keyed to its
entity key ``<source>|<pk>`` (``cdcapp.model.messages``). The decoder has already put the spec's
columns in canonical form (``cdcapp.model.types``); other columns are kept in JSON form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from cdcapp.debezium.decode import UNAVAILABLE, Change, DecodeError, decode
from cdcapp.model import messages
from cdcapp.model.messages import UNAVAILABLE_MARK, Message, entity_key
from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType

log = logging.getLogger(__name__)


class ChangeShaper:
    """Decoded change -> its ``chg`` stage message, keyed by its entity key.

    ``types`` are the spec's columns plus, for an entity a dimension mirrors, the columns schema
    sync has added since (``learned``); the decoder makes both canonical. A spec column that a
    created or updated row lacks (dropped or renamed at the source) gets its type's default, so
    the facts that read it keep flowing; each such column is logged once and counted by the
    caller (``missing``).
    """

    def __init__(self, spec: Spec, entity: str) -> None:
        self.entity = entity
        self.key_columns = spec.entities[entity].key
        self.spec_types: dict[str, ColumnType] = spec.column_types(entity)
        self.spec_columns = frozenset(self.spec_types)
        self.types: dict[str, ColumnType] = self.spec_types
        self.mirrored = any(d.entity == entity and d.columns == "all" for d in spec.dimensions)
        #: columns left out of every row: names no ClickHouse column can have
        self.refused: frozenset[str] = frozenset()
        self._known = self.spec_columns
        #: spec columns found missing from a row, since start (each logged once)
        self.missing: set[str] = set()
        #: column -> a counter of rows that lacked it (the runtime's metric)
        self.on_missing: Callable[[str, str], Any] | None = None

    def learned(self, extra: dict[str, ColumnType], refused: frozenset[str]) -> None:
        # A new mapping, not an update in place: the decoder caches its converters by identity.
        self.types = {**extra, **self.spec_types}
        self.refused = refused
        self._known = frozenset(self.types) | refused

    def unknown_columns(self, change: Change) -> list[str]:
        """Columns of the change's images that a mirrored dimension does not have yet."""
        known = self._known
        after, before = change.after, change.before
        if not self.mirrored or ((after is None or after.keys() <= known) and (before is None or before.keys() <= known)):
            return []
        return [c for c in dict.fromkeys([*(after or ()), *(before or ())]) if c not in known]

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
        row = None
        if image is not None:
            if image.keys() <= self.types.keys() and UNAVAILABLE not in image.values():
                # Every column is typed, so the decoder made it canonical, in an image of its own.
                row = image
            else:
                row = {c: self._canonical(c, v) for c, v in image.items() if c not in self.refused}
            if change.op != "d" and not row.keys() >= self.spec_columns:
                self._fill_missing(row)
        return messages.change(entity_key(change.source, key_values), change.op, row, change.position,
                               change.source_ts_ms, change.snapshot)

    def _fill_missing(self, row: dict[str, Any]) -> None:
        for column, column_type in self.spec_types.items():
            if column not in row:
                row[column] = column_type.default
                if self.on_missing is not None:
                    self.on_missing(self.entity, column).inc()
                if column not in self.missing:
                    self.missing.add(column)
                    log.warning("%s rows no longer have column %r (dropped or renamed at the source?): it is "
                                "filled with %r, and the facts that read it keep flowing", self.entity, column,
                                column_type.default)

    def _canonical(self, column: str, value: Any) -> Any:
        if value is UNAVAILABLE:
            return UNAVAILABLE_MARK
        return value if column in self.types else _json_safe(value)


def _json_safe(value: Any) -> Any:
    """Columns the spec does not declare are kept, in whatever JSON form they take."""
    return orjson.loads(orjson.dumps(value, default=str))
