"""Pure decoder for Debezium change events (JsonConverter output) into :class:`Change`.

No Kafka or Faust imports: :func:`decode` takes the raw key and value bytes of one record.
Both JsonConverter forms are accepted for key and value: the schema envelope
``{"schema": ..., "payload": ...}`` (``schemas.enable=true``) and the bare payload.

Values
------
A column with a type in ``columns`` (the spec's ``cdcapp.model.types``) is read straight into
that type's canonical value: its encoding is read as the schema says, or, without a schema, as
the column type says (``cdcapp.debezium.connect``), and a value that does not fit the type is a
:class:`DecodeError` naming the column.  Other columns are kept as Python values read by the
schema's logical types, or as JSON gives them without one.

In ``postgresql`` events the unchanged-TOAST placeholder ``__debezium_unavailable_value``
(Debezium's default ``unavailable.value.placeholder``) becomes :data:`UNAVAILABLE` in every shape
Debezium emits it: the string, its bytes (base64) for binary columns, the one-element and
byte-list forms it uses for arrays, and the map it uses for hstore.  Other connectors never emit
it, so there the same text is kept as an ordinary value.

Envelopes
---------
A schema envelope whose payload is null is JsonConverter's encoding of a null record and
decodes like a tombstone (``None``); a key whose payload is null counts as no key.  Only the
ops ``c``/``u``/``d``/``r`` are accepted: truncate (``t``) and message (``m``) events have no
row to put in a :class:`Change` and raise :class:`DecodeError`.  ``Change.position`` is
described in ``cdcapp.debezium.positions``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from cdcapp.debezium.connect import Converter, Converters, DecodeError, hint_reader, show, struct_converters
from cdcapp.debezium.positions import POSITIONS, source_str
from cdcapp.model.types import ColumnType

__all__ = ["UNAVAILABLE", "Change", "DecodeError", "decode", "unwrap"]


class _Unavailable(enum.Enum):
    # An enum member pickles by name, so identity survives serialisation.
    UNAVAILABLE = "__debezium_unavailable_value"

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable.UNAVAILABLE

Columns = Mapping[str, ColumnType] | None


@dataclass(frozen=True, slots=True)
class Change:
    """One row change.  Column values are converted as described in the module docstring."""

    #: source id: ``source.name`` (Debezium's topic.prefix, e.g. "postgres"; "sqlite" for the relay)
    source: str
    #: ``source.connector``: "postgresql", "mysql", "mariadb" or "sqlite"
    connector: str
    #: ``source.table``
    table: str
    #: "c", "u", "d" or "r"
    op: str
    #: ``pk_columns`` of after (before for deletes), else the primary-key columns of the key message
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: orders the changes of one row; see ``cdcapp.debezium.positions``
    position: int
    #: ``source.ts_ms``: when the change committed at the source
    source_ts_ms: int
    #: a snapshot read (``op == "r"`` or ``source.snapshot`` names a snapshot phase)
    snapshot: bool


_PLACEHOLDER: Final = "__debezium_unavailable_value"
_PLACEHOLDER_BYTES: Final = _PLACEHOLDER.encode()
_PLACEHOLDER_B64: Final = base64.b64encode(_PLACEHOLDER_BYTES).decode()
# Mirrors Debezium's UnchangedToastedPlaceholder for array and hstore columns.
_PLACEHOLDER_CONTAINERS: Final = (
    [_PLACEHOLDER],
    [_PLACEHOLDER_B64],
    list(_PLACEHOLDER_BYTES),
    [str(uuid.UUID(bytes=hashlib.md5(_PLACEHOLDER_BYTES).digest(), version=3))],
    {_PLACEHOLDER: _PLACEHOLDER},
)

_OPS: Final = frozenset(("c", "u", "d", "r"))
_SNAPSHOT_VALUES: Final = frozenset(
    ("true", "first", "last", "first_in_data_collection", "last_in_data_collection", "incremental")
)
_NO_CONVERTERS: Final[Converters] = ()
_CACHE_MAX: Final = 256
_typed_cache: dict[tuple[int, int, bool], tuple[Converters, Mapping[str, ColumnType], Converters]] = {}


def _to_canonical(read: Converter | None, column_type: ColumnType, schemaless: bool) -> Converter:
    canonical = column_type.canonical
    as_is = column_type.already_canonical() if schemaless else None
    if as_is is not None:
        # Most schemaless values are canonical as JSON gives them; the hint readers would read
        # each of these as itself (a decimal string as that literal), so they are kept unread.
        if read is None:
            return lambda value: value if as_is(value) else canonical(value)
        return lambda value: value if as_is(value) else canonical(read(value))
    if read is None:
        return canonical
    return lambda value: canonical(read(value))


def _typed(read: Converters, columns: Columns, *, schemaless: bool) -> Converters:
    """``read`` with every typed column's value taken on to its canonical form, compiled once."""
    if not columns:
        return read
    cache_key = (id(read), id(columns), schemaless)
    hit = _typed_cache.get(cache_key)
    # The hit keeps both inputs alive, so their ids cannot be reused while it is cached.
    if hit is not None and hit[0] is read and hit[1] is columns:
        return hit[2]
    readers = {column: convert for column, convert, _ in read}
    typed = [(column, convert, label) for column, convert, label in read if column not in columns]
    for column, column_type in columns.items():
        reader = readers.get(column) or (hint_reader(column_type) if schemaless else None)
        typed.append((column, _to_canonical(reader, column_type, schemaless), column_type.name))
    if len(_typed_cache) >= _CACHE_MAX:
        _typed_cache.clear()
    _typed_cache[cache_key] = (read, columns, tuple(typed))
    return tuple(typed)


# --- rows -----------------------------------------------------------------------------------------


def _convert_row(row: dict[str, Any], converters: Converters, where: str, toast: bool) -> dict[str, Any]:
    """Convert ``row`` in place (it is freshly parsed and owned by this call) and return it.

    ``toast``: replace the unchanged-TOAST placeholder; only PostgreSQL events carry one, and
    elsewhere the same text would be an ordinary value.
    """
    column = value = label = None
    try:
        if toast:
            for column, value in row.items():
                cls = value.__class__
                if cls is str:
                    if value == _PLACEHOLDER or value == _PLACEHOLDER_B64:
                        row[column] = UNAVAILABLE
                elif (cls is list or cls is dict) and value in _PLACEHOLDER_CONTAINERS:
                    row[column] = UNAVAILABLE
        for column, convert, label in converters:
            value = row.get(column)
            if value is not None and value is not UNAVAILABLE:
                row[column] = convert(value)
    except Exception as exc:
        error = DecodeError(f"{where}.{column}: cannot read {show(value)} as {label}: {exc}")
        error.column = column
        raise error from exc
    return row


def _loads(data: Any, where: str) -> Any:
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise DecodeError(f"{where}: not valid JSON: {exc}") from exc


def unwrap(document: Any, where: str) -> tuple[Any, Any]:
    """Split a JsonConverter message into (schema or None, payload)."""
    if document.__class__ is not dict:
        raise DecodeError(f"{where}: expected a JSON object, got {show(document)}")
    # Schema-enabled JsonConverter writes exactly these two keys, the schema being an object or null.
    if len(document) == 2 and "payload" in document:
        schema = document.get("schema", False)
        if schema is None or (schema.__class__ is dict and "type" in schema):
            return schema, document["payload"]
    return None, document


# --- decode ---------------------------------------------------------------------------------------


def _side_schema(schema: dict[str, Any], side: str) -> Any:
    fields = schema.get("fields")
    if fields.__class__ is not list:
        raise DecodeError(f"value.schema.fields: expected a list, got {show(fields)}")
    for field in fields:
        if field.__class__ is dict and field.get("field") == side:
            return field
    raise DecodeError(f"value.schema: no '{side}' field although the payload has one")


def _row(
    payload: dict[str, Any], side: str, schema: dict[str, Any] | None, columns: Columns, toast: bool
) -> dict[str, Any] | None:
    row = payload.get(side)
    if row is None:
        return None
    if row.__class__ is not dict:
        raise DecodeError(f"{side}: expected an object or null, got {show(row)}")
    if schema is None:
        return _convert_row(row, _typed(_NO_CONVERTERS, columns, schemaless=True), side, toast)
    read = struct_converters(_side_schema(schema, side), f"value.schema.{side}")
    return _convert_row(row, _typed(read, columns, schemaless=False), side, toast)


def _key(
    key: Any,
    row: dict[str, Any] | None,
    row_side: str,
    pk_columns: Sequence[str],
    columns: Columns,
    toast: bool,
) -> dict[str, Any]:
    if isinstance(pk_columns, str):
        pk_columns = (pk_columns,)
    if row is not None and all(column in row and row[column] is not UNAVAILABLE for column in pk_columns):
        # The row carries the key already decoded (PostgreSQL's default replica identity keeps it
        # in a delete's before image): parsing the key message again would only cost time.
        return {column: row[column] for column in pk_columns}
    if key is not None:
        schema, payload = unwrap(_loads(key, "key"), "key")
        if payload is not None:
            if payload.__class__ is not dict:
                raise DecodeError(f"key: expected an object payload, got {show(payload)}")
            if schema is None:
                return _convert_row(payload, _typed(_NO_CONVERTERS, columns, schemaless=True), "key", toast)
            read = struct_converters(schema, "key.schema")
            return _convert_row(payload, _typed(read, columns, schemaless=False), "key", toast)
    if row is None:
        raise DecodeError("key: no key message and no before/after row to take pk_columns from")
    try:
        return {column: row[column] for column in pk_columns}
    except KeyError as exc:
        raise DecodeError(f"key: no key message and primary-key column {exc} is missing from {row_side}") from None


def _decode(key: Any, value: Any, columns: Columns, pk_columns: Sequence[str]) -> Change | None:
    schema, payload = unwrap(_loads(value, "value"), "value")
    if payload is None:
        return None
    if payload.__class__ is not dict:
        raise DecodeError(f"value: expected an object payload, got {show(payload)}")

    op = payload.get("op")
    if op.__class__ is not str or op not in _OPS:
        raise DecodeError(f"op: expected one of c, u, d, r, got {show(op)}")
    source = payload.get("source")
    if source.__class__ is not dict:
        raise DecodeError(f"source: expected an object, got {show(source)}")
    connector = source_str(source, "connector")
    position_of = POSITIONS.get(connector)
    if position_of is None:
        raise DecodeError(f"source.connector: unsupported connector {connector!r}")
    position = position_of(source)
    source_ts_ms = source.get("ts_ms")
    if source_ts_ms.__class__ is not int:
        raise DecodeError(f"source.ts_ms: expected an integer, got {show(source_ts_ms)}")
    flag = source.get("snapshot")
    snapshot = op == "r" or (flag.__class__ is str and flag in _SNAPSHOT_VALUES)

    toast = connector == "postgresql"
    before = _row(payload, "before", schema, columns, toast)
    after = _row(payload, "after", schema, columns, toast)
    if after is None and op != "d":
        raise DecodeError(f"after: required for op {op!r}")

    key_row, key_side = (after, "after") if after is not None else (before, "before")
    return Change(
        source=source_str(source, "name"),
        connector=connector,
        table=source_str(source, "table"),
        op=op,
        key=_key(key, key_row, key_side, pk_columns, columns, toast),
        before=before,
        after=after,
        position=position,
        source_ts_ms=source_ts_ms,
        snapshot=snapshot,
    )


def decode(
    key: bytes | None,
    value: bytes | None,
    *,
    columns: Columns = None,
    pk_columns: Sequence[str] = ("id",),
) -> Change | None:
    """Decode one Debezium record; ``None`` for a tombstone, :class:`DecodeError` if malformed."""
    if value is None:
        return None
    try:
        return _decode(key, value, columns, pk_columns)
    except DecodeError:
        raise
    except Exception as exc:
        # Every check above should have produced a DecodeError; this keeps the contract if one is missed.
        raise DecodeError(f"malformed record ({type(exc).__name__}: {exc})") from exc
