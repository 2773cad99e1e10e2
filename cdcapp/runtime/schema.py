"""Schema sync: a mirrored dimension (``columns: all``) follows its source table's columns, live.

ClickHouse is the record of what was added: each worker reads a mirrored table's columns from
``system.columns`` when it meets a column it does not know, so workers need no other channel to
agree, and a restarted worker finds what the others did.

- **A column the source gained** shows up in a change's row. Ingest stops on that record (the
  stage agent's batch waits; the sink goes on), learns the column's type - from the event's Connect
  schema when it has one (the SQLite relay's), else from the source's catalog
  (``cdcapp.sources.catalog``) - runs ``ALTER TABLE ... ADD COLUMN`` on every table mirroring
  the entity, rebuilds their ``*_current`` views, and decodes the record again: the column is
  filled from that change on. The sink, on a row with a column its table shape lacks, reads the
  table's columns again (``refresh``).
- **A value that no longer fits** a column schema sync added: if the source's type now maps to a
  type that holds every old value (``cdcapp.model.sourcetypes.widens``), ``MODIFY COLUMN``; else
  the change is dead-lettered with what to do.
- **A name no ClickHouse column can have** (control characters, too long) is left out of every
  row, logged as an error and counted; the rest of the row flows.

A column that leaves the source stays in ClickHouse with its history; later rows hold its
default (``SinkBuffer``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson

from cdcapp.clickhouse.client import DUPLICATE_COLUMN_CODES, ClickHouse, error_code
from cdcapp.clickhouse.ddl import (META_COLUMNS, BadIdentifier, TableShape, add_column, check_identifier,
                                   modify_column, replace_current_view, table_shapes)
from cdcapp.config import Settings
from cdcapp.debezium.decode import unwrap
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.sourcetypes import SourceColumn, from_connect_field, to_clickhouse, widens
from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType, TypeSpecError, parse_type
from cdcapp.retry import Backoff
from cdcapp.runtime.metrics import SCHEMA_CHANGES
from cdcapp.sources.catalog import source_columns

log = logging.getLogger(__name__)


class SchemaSync:
    def __init__(self, spec: Spec, settings: Settings, clickhouse: ClickHouse, shapes: dict[str, TableShape]) -> None:
        self.settings = settings
        self.clickhouse = clickhouse
        self.database = clickhouse.database
        #: the sink buffer's shapes: replaced here, table by table, when a mirrored table changes
        self.shapes = shapes
        self.base = table_shapes(spec)
        self.mirrors: dict[str, list[str]] = {}
        for dim in spec.dimensions:
            if dim.columns == "all":
                self.mirrors.setdefault(dim.entity, []).append(dim.table)
        self.refused: dict[str, set[str]] = {}
        self.lock = asyncio.Lock()

    # ------------------------------------------------------------------ reading ClickHouse
    async def refresh(self, table: str) -> TableShape:
        """The table's shape as ClickHouse has it now (the spec's columns keep the spec's types)."""
        base = self.base[table]
        extra: dict[str, ColumnType] = {}
        for column, type_name in (await self.clickhouse.columns(table)).items():
            if column in base.columns:
                continue
            try:
                extra[column] = parse_type(type_name)
            except TypeSpecError:
                log.error("%s.%s has type %s, which the pipeline does not write: the column is left out",
                          table, column, type_name)
        data = {c: t for c, t in base.columns.items() if c not in META_COLUMNS}
        shape = TableShape(table, {**data, **extra, **META_COLUMNS}, base.key, True, frozenset(extra))
        self.shapes[table] = shape
        return shape

    async def reread(self, table: str) -> None:
        """``refresh``, retried until ClickHouse answers (for the sink, which has nothing else to do)."""
        await self._retrying(f"reading the columns of {table}", lambda: self.refresh(table))

    async def _extra_types(self, entity: str) -> dict[str, ColumnType]:
        extra: dict[str, ColumnType] = {}
        for table in self.mirrors[entity]:
            shape = await self.refresh(table)
            for column in shape.extra:
                extra.setdefault(column, shape.columns[column])
        return extra

    # ------------------------------------------------------------------ ingest's calls
    async def learn(self, shaper: ChangeShaper, value: bytes, columns: list[str]) -> None:
        """Add ``columns`` (met in the event ``value``) to every table mirroring the shaper's
        entity, where missing; retried until ClickHouse and the catalog answer."""
        await self._retrying(f"adding {columns} to {self.mirrors[shaper.entity]}",
                             lambda: self._learn(shaper, value, columns))

    async def _learn(self, shaper: ChangeShaper, value: bytes, columns: list[str]) -> None:
        entity = shaper.entity
        refused = self.refused.setdefault(entity, set())
        async with self.lock:
            event = _Event(value)
            for table in self.mirrors[entity]:
                shape = await self.refresh(table)
                for column in columns:
                    if column in shape.columns or column in refused:
                        continue
                    try:
                        check_identifier(column)
                    except BadIdentifier as exc:
                        refused.add(column)
                        SCHEMA_CHANGES.labels(table, "refused").inc()
                        log.error("%s: source column left out of %s: %s", entity, table, exc)
                        continue
                    column_type = await self._source_type(event, column)
                    try:
                        await self.clickhouse.execute(add_column(self.database, table, column, column_type))
                    except Exception as exc:
                        if error_code(exc) not in DUPLICATE_COLUMN_CODES:
                            raise
                        continue  # another worker added it first
                    SCHEMA_CHANGES.labels(table, "added").inc()
                    log.info("schema sync: added column %r %s to %s.%s (source %s.%s)", column, column_type.name,
                             self.database, table, event.source.get("table"), column)
                await self._sync_view(table)
            shaper.learned(await self._extra_types(entity), frozenset(refused))

    async def widen(self, shaper: ChangeShaper, value: bytes, column: str) -> str | None:
        """None once ``column`` was widened to hold what the source's type holds now (decode the
        event again); otherwise why it was not, and what to do."""
        result: list[str | None] = []

        async def attempt() -> None:
            result[:] = [await self._widen(shaper, value, column)]

        await self._retrying(f"widening {shaper.entity}.{column}", attempt)
        return result[0]

    async def _widen(self, shaper: ChangeShaper, value: bytes, column: str) -> str | None:
        async with self.lock:
            extra = await self._extra_types(shaper.entity)
            current = extra.get(column)
            if current is None:
                return f"column {column!r} is no longer in ClickHouse"
            wanted = await self._source_type(_Event(value), column)
            if wanted.name != current.name and widens(current, wanted):
                for table in self.mirrors[shaper.entity]:
                    await self.clickhouse.execute(modify_column(self.database, table, column, wanted))
                    SCHEMA_CHANGES.labels(table, "widened").inc()
                    log.info("schema sync: widened %s.%s.%s from %s to %s", self.database, table, column,
                             current.name, wanted.name)
                    await self._sync_view(table)
                shaper.learned(await self._extra_types(shaper.entity), frozenset(self.refused.get(shaper.entity, ())))
                return None
        tables = ", ".join(self.mirrors[shaper.entity])
        return (f"the source's type for {column!r} maps to {wanted.name}, and ClickHouse's {current.name} in {tables} "
                f"{'is that type' if wanted.name == current.name else 'cannot widen to it without changing values'}. "
                f"Change the ClickHouse column by hand (ALTER TABLE ... MODIFY COLUMN) or rebuild the table, then "
                f"replay this dead letter (cdcapp dlq replay --stage ingest)")

    # ------------------------------------------------------------------ helpers
    async def _source_type(self, event: "_Event", column: str) -> ColumnType:
        connector = str(event.source.get("connector"))
        field = event.field(column)
        if field is not None:
            from_schema = from_connect_field(connector, field)
            if from_schema is not None:
                return from_schema
        namespace = event.source.get("schema") or event.source.get("db")
        table = str(event.source.get("table"))
        try:
            catalog = await asyncio.to_thread(source_columns, connector, self.settings, namespace, table)
        except LookupError as exc:
            catalog, why = {}, str(exc)
        else:
            why = f"{namespace}.{table} has no column {column!r} any more"
        found: SourceColumn | None = catalog.get(column)
        if found is not None:
            return to_clickhouse(connector, found)
        guessed = _from_value(event.value_of(column))
        log.warning("schema sync: the type of %s.%s is taken from its value (%s): %s", table, column, guessed.name, why)
        return guessed

    async def _sync_view(self, table: str) -> None:
        """Rebuild the table's ``*_current`` view when its columns differ from the table's: after an
        ALTER here, and after one whose view rebuild failed half way (ClickHouse went away), which
        the retry would otherwise find done, the column being there already."""
        shape = self.shapes[table]
        if await self.clickhouse.columns(shape.current_view) == await self.clickhouse.columns(table):
            return
        for statement in replace_current_view(self.database, shape, uuid.uuid4().hex[:8]):
            await self.clickhouse.execute(statement)

    async def _retrying(self, what: str, attempt: Any) -> None:
        backoff = Backoff(0.5, self.settings.sink_retry_max_s)
        while True:
            try:
                await attempt()
                return
            except Exception as exc:  # noqa: BLE001 - ClickHouse or the catalog away: wait, as the sink does
                delay = backoff.delay()
                log.error("schema sync: %s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)


class _Event:
    """The parts of a raw Debezium event schema sync needs: its source block, its Connect schema."""

    def __init__(self, value: bytes) -> None:
        self.schema, self.payload = unwrap(orjson.loads(value), "value")
        self.source: dict[str, Any] = self.payload.get("source") or {}

    def field(self, column: str) -> dict[str, Any] | None:
        for side in (self.schema or {}).get("fields") or ():
            if side.get("field") in ("after", "before"):
                for field in side.get("fields") or ():
                    if field.get("field") == column:
                        return field
        return None

    def value_of(self, column: str) -> Any:
        for side in ("after", "before"):
            row = self.payload.get(side) or {}
            if row.get(column) is not None:
                return row[column]
        return None


def _from_value(value: Any) -> ColumnType:
    if isinstance(value, bool):
        return parse_type("UInt8")
    if isinstance(value, int):
        return parse_type("Int64")
    if isinstance(value, float):
        return parse_type("Float64")
    return parse_type("String")
