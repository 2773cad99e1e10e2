"""Pure decoder for Debezium change events (JsonConverter output) into :class:`Change`.

No Kafka or Faust imports: :func:`decode` takes the raw key and value bytes of one record.
Both JsonConverter forms are accepted for key and value: the schema envelope
``{"schema": ..., "payload": ...}`` (``schemas.enable=true``) and the bare payload.

Values
------
With a Connect schema, each field's logical type (its schema ``name``) selects the conversion:
``Decimal`` (base64 unscaled integer + ``parameters.scale``) and ``VariableScaleDecimal`` ->
:class:`decimal.Decimal` with exactly the source scale; ``Date`` -> :class:`datetime.date`;
``Timestamp``/``MicroTimestamp``/``NanoTimestamp``/``ZonedTimestamp`` -> naive UTC
:class:`datetime.datetime` (nanoseconds are floored to microseconds, Python's resolution);
``Time``/``MicroTime``/``NanoTime`` -> :class:`datetime.time`.  Arrays of those types are
converted element-wise.  Everything else is kept as JSON gives it.  When a schema is present
it is authoritative and ``column_types`` is not consulted.

Without a schema, ``column_types`` (column -> ClickHouse type) is the hint; ``Nullable(...)`` and
``LowCardinality(...)`` wrappers are looked through:

* ``Decimal(P,S)``/``DecimalN(S)``: a string that is a decimal literal ("12.30", "12", "-1e3") is
  read as a number; any other string is read as Debezium's base64 unscaled integer with scale S.
  (An all-digit string whose length is a multiple of 4 is also valid base64; it is read as a
  number, because integer-valued decimal strings are far more common than such base64 values.
  Enable schemas, or ``decimal.handling.mode=string``, to avoid the question entirely.)
  ints and floats (via ``str``) are accepted too.  The result is rounded half-even to scale S;
  more than P digits is a :class:`DecodeError`.
* ``DateTime``/``DateTime64(...)``: an ISO-8601 string (offset optional; none means UTC) or an
  integer epoch whose unit is chosen by magnitude: ``|v| < 1e11`` seconds, ``< 1e14`` millis,
  ``< 1e17`` micros, otherwise nanos.  Every instant from 1973-03-03 to the year 5138 (and its
  mirror before 1966-10-31) is therefore read right whatever its unit; a milli/micro/nano value
  closer to 1970 than that is misread as the next coarser unit.
* ``Date``/``Date32``: integer days since 1970-01-01 or ``YYYY-MM-DD``.
* any other type, and columns not in ``column_types``: passed through.

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
row to put in a :class:`Change` and raise :class:`DecodeError`.

Position
--------
``Change.position`` orders the changes of one row; it is an int below 2**63.

* ``postgresql``: ``source.lsn``, the WAL position of the change record.  A second change to a
  row needs the row lock the first one holds until commit, so it is written to the WAL later;
  changes within one transaction are written in order.  Snapshot rows carry the snapshot's LSN,
  and streaming resumes after it.  Known limit: a transaction already running when the snapshot
  is taken and committing after it can have change records *below* the snapshot LSN, so for
  that race the snapshot row looks newer; ``Change.snapshot`` lets the consumer tell them apart.
* ``mysql``/``mariadb``: ``file_number << 44 | pos << 12 | row`` from ``source.file`` (numeric
  suffix, < 2**19), ``source.pos`` (the event's offset in that file, < 2**32) and ``source.row``
  (index of the row within the event, < 2**12).  The binlog is written at commit in commit order
  and file numbers only grow, so the triple is increasing in binlog order and two changes to a
  row can only appear in the order they committed.  Snapshot rows carry the binlog position
  read when the snapshot started (row 0); any later rows event lies strictly after it, behind
  at least its transaction's GTID/BEGIN event.  The order is
  lost only if the binlog is reset (``RESET MASTER``) or the connector follows a failover to a
  server with its own file numbering.
* ``sqlite``: ``source.seq``, the relay's change-log sequence.  SQLite has a single writer and
  the triggers append to the log inside the writing transaction, so the sequence is commit order
  (the relay must never reuse a sequence number, e.g. it needs ``AUTOINCREMENT``).

Performance
-----------
Per struct schema the field converters are compiled once and kept in a small cache keyed by
(schema name, field count).  A hit is confirmed by comparing the cached ``fields`` list with
the message's (one C-level deep ``==``), so a schema that changes under the same name and
field count (ALTER COLUMN ... TYPE) is recompiled rather than misread.  ``column_types`` hints
are compiled once per distinct mapping content.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
import uuid
from binascii import a2b_base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Any, Final

import orjson

__all__ = ["UNAVAILABLE", "Change", "DecodeError", "decode"]


class _Unavailable(enum.Enum):
    # An enum member pickles by name, so identity survives Faust's table serialisation.
    UNAVAILABLE = "__debezium_unavailable_value"

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable.UNAVAILABLE


class DecodeError(ValueError):
    """A record that is not a well-formed Debezium change event; the message names the field."""


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
    #: primary-key columns from the key message, else ``pk_columns`` of after (before for deletes)
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: orders the changes of one row; see "Position" in the module docstring
    position: int
    #: ``source.ts_ms``: when the change committed at the source
    source_ts_ms: int
    #: a snapshot read (``op == "r"`` or ``source.snapshot`` names a snapshot phase)
    snapshot: bool


Converter = Callable[[Any], Any]
#: (column, converter, label for error messages) for each column that needs converting.
Converters = tuple[tuple[str, Converter, str], ...]

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

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
_MICROS_PER_DAY: Final = 86_400_000_000
# scaleb() rounds to the context precision; this one is large enough never to round.
_EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

# A worker sees a few schemas per table; the bound only guards against unbounded growth.
_CACHE_MAX: Final = 256
_schema_cache: dict[tuple[str | None, int], tuple[list[Any], Converters]] = {}
_hint_cache: dict[tuple[tuple[str, str], ...], Converters] = {}
_NO_CONVERTERS: Final[Converters] = ()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- scalar conversions ------------------------------------------------------------------------
# Converters run once per value per event, so each checks and converts in one call.  The type
# checks reject bool (an int subclass) and floats, which timedelta/date would silently accept.

_EXPECTED_INT: Final = "expected an integer"


def _unscaled(value: Any) -> int:
    raw = a2b_base64(value, strict_mode=True)
    if not raw:
        raise ValueError("empty base64 value")
    return int.from_bytes(raw, "big", signed=True)


def _date_from_days(value: Any) -> date:
    if value.__class__ is not int:
        raise ValueError(_EXPECTED_INT)
    return date.fromordinal(_EPOCH_ORDINAL + value)


def _datetime_from_millis(value: Any) -> datetime:
    if value.__class__ is not int:
        raise ValueError(_EXPECTED_INT)
    return _EPOCH + timedelta(0, 0, 0, value)


def _datetime_from_micros(value: Any) -> datetime:
    if value.__class__ is not int:
        raise ValueError(_EXPECTED_INT)
    return _EPOCH + timedelta(0, 0, value)


def _datetime_from_nanos(value: Any) -> datetime:
    if value.__class__ is not int:
        raise ValueError(_EXPECTED_INT)
    return _EPOCH + timedelta(0, 0, value // 1000)


def _datetime_from_iso(value: Any) -> datetime:
    if value.__class__ is not str:
        raise ValueError("expected an ISO-8601 string")
    if value[-1:] == "Z":
        # Debezium writes every ZonedTimestamp in UTC with a Z; parsing it naive is ~4x faster.
        parsed = datetime.fromisoformat(value[:-1])
        if parsed.tzinfo is not None:
            raise ValueError("both an offset and Z")
        return parsed
    parsed = datetime.fromisoformat(value)
    offset = parsed.utcoffset()
    return parsed if offset is None else (parsed - offset).replace(tzinfo=None)


def _time_of_day(value: Any, per_micro: int, micros_per: int) -> time:
    if value.__class__ is not int:
        raise ValueError(_EXPECTED_INT)
    micros = value // per_micro * micros_per
    if not 0 <= micros < _MICROS_PER_DAY:
        raise ValueError("time of day outside 00:00..24:00")
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micro)


def _time_from_millis(value: Any) -> time:
    return _time_of_day(value, 1, 1000)


def _time_from_micros(value: Any) -> time:
    return _time_of_day(value, 1, 1)


def _time_from_nanos(value: Any) -> time:
    return _time_of_day(value, 1000, 1)


def _variable_scale_decimal(value: Any) -> Decimal:
    if value.__class__ is not dict:
        raise ValueError('expected {"scale": int, "value": base64}')
    scale = value.get("scale")
    if scale.__class__ is not int:
        raise ValueError("expected an integer scale")
    return Decimal(_unscaled(value.get("value"))).scaleb(-scale, _EXACT)


# --- Connect schema -> converters -----------------------------------------------------------------

Labelled = tuple[Converter, str]


def _decimal_from_schema(field: dict[str, Any], where: str) -> Labelled:
    params = field.get("parameters")
    scale = params.get("scale") if params.__class__ is dict else None
    try:
        # Connect schema parameters are strings; accept an int too.
        scale = int(scale) if scale.__class__ in (str, int) else None
    except ValueError:
        scale = None
    if scale is None:
        raise DecodeError(f"{where}: Decimal schema without an integer parameters.scale")
    exponent = -scale

    def convert(value: Any) -> Decimal:
        return Decimal(_unscaled(value)).scaleb(exponent, _EXACT)

    return convert, f"Decimal(scale={scale})"


def _fixed(fn: Converter, label: str) -> Callable[[dict[str, Any], str], Labelled]:
    return lambda field, where: (fn, label)


_LOGICAL_TYPES: Final[dict[str, Callable[[dict[str, Any], str], Labelled]]] = {
    "org.apache.kafka.connect.data.Decimal": _decimal_from_schema,
    "io.debezium.data.VariableScaleDecimal": _fixed(_variable_scale_decimal, "VariableScaleDecimal"),
    "io.debezium.time.Date": _fixed(_date_from_days, "Date (days)"),
    "org.apache.kafka.connect.data.Date": _fixed(_date_from_days, "Date (days)"),
    "io.debezium.time.Timestamp": _fixed(_datetime_from_millis, "Timestamp (millis)"),
    "org.apache.kafka.connect.data.Timestamp": _fixed(_datetime_from_millis, "Timestamp (millis)"),
    "io.debezium.time.MicroTimestamp": _fixed(_datetime_from_micros, "MicroTimestamp"),
    "io.debezium.time.NanoTimestamp": _fixed(_datetime_from_nanos, "NanoTimestamp"),
    "io.debezium.time.ZonedTimestamp": _fixed(_datetime_from_iso, "ZonedTimestamp"),
    "io.debezium.time.Time": _fixed(_time_from_millis, "Time (millis)"),
    "org.apache.kafka.connect.data.Time": _fixed(_time_from_millis, "Time (millis)"),
    "io.debezium.time.MicroTime": _fixed(_time_from_micros, "MicroTime"),
    "io.debezium.time.NanoTime": _fixed(_time_from_nanos, "NanoTime"),
}


def _array_of(inner: Labelled) -> Labelled:
    convert_item, label = inner

    def convert(value: Any) -> list[Any]:
        if value.__class__ is not list:
            raise ValueError("expected an array")
        return [None if item is None else convert_item(item) for item in value]

    return convert, f"array of {label}"


def _converter_for(field: dict[str, Any], where: str) -> Labelled | None:
    logical = field.get("name")
    if logical is not None:
        make = _LOGICAL_TYPES.get(logical) if logical.__class__ is str else None
        if make is not None:
            return make(field, where)
    if field.get("type") == "array":
        items = field.get("items")
        if items.__class__ is not dict:
            raise DecodeError(f"{where}: array schema without an items schema")
        inner = _converter_for(items, f"{where}[]")
        return None if inner is None else _array_of(inner)
    return None


def _struct_converters(schema: Any, where: str) -> Converters:
    if schema.__class__ is not dict:
        raise DecodeError(f"{where}: expected a struct schema object, got {_show(schema)}")
    fields = schema.get("fields")
    if fields.__class__ is not list:
        raise DecodeError(f"{where}.fields: expected a list, got {_show(fields)}")
    name = schema.get("name")
    cache_key = (name if name.__class__ is str else None, len(fields))
    hit = _schema_cache.get(cache_key)
    if hit is not None and hit[0] == fields:
        return hit[1]
    converters = []
    for index, field in enumerate(fields):
        column = field.get("field") if field.__class__ is dict else None
        if column.__class__ is not str:
            raise DecodeError(f"{where}.fields[{index}]: expected an object with a string 'field'")
        labelled = _converter_for(field, f"{where}.{column}")
        if labelled is not None:
            converters.append((column, *labelled))
    if len(_schema_cache) >= _CACHE_MAX:
        _schema_cache.clear()
    _schema_cache[cache_key] = (fields, tuple(converters))
    return tuple(converters)


# --- ClickHouse type hints -> converters ------------------------------------------------------------

_WRAPPER_TYPE: Final = re.compile(r"\s*(?:Nullable|LowCardinality)\s*\((.*)\)\s*", re.I | re.S)
_DECIMAL_TYPE: Final = re.compile(r"\s*Decimal\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\s*", re.I)
_DECIMAL_N_TYPE: Final = re.compile(r"\s*Decimal(32|64|128|256)\s*\(\s*(\d+)\s*\)\s*", re.I)
_DATETIME_TYPE: Final = re.compile(r"\s*DateTime(?:64)?\s*(?:\(.*\))?\s*", re.I | re.S)
_DATE_TYPE: Final = re.compile(r"\s*Date(?:32)?\s*", re.I)
_DECIMAL_N_PRECISION: Final = {"32": 9, "64": 18, "128": 38, "256": 76}
_DECIMAL_LITERAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _decimal_hint(precision: int, scale: int) -> Converter:
    context = Context(prec=precision)
    quantum = Decimal(1).scaleb(-scale)
    exponent = -scale

    def convert(value: Any) -> Decimal:
        cls = value.__class__
        if cls is str:
            if _DECIMAL_LITERAL.fullmatch(value):
                number = Decimal(value)
            else:
                number = Decimal(_unscaled(value)).scaleb(exponent, _EXACT)
        elif cls is int:
            number = Decimal(value)
        elif cls is float:
            number = Decimal(str(value))
        else:
            raise ValueError("expected a decimal string, base64 string, int or float")
        try:
            return number.quantize(quantum, context=context)
        except InvalidOperation:
            raise ValueError("too many digits") from None

    return convert


def _datetime_hint(value: Any) -> datetime:
    if value.__class__ is int:
        magnitude = -value if value < 0 else value
        if magnitude < 10**11:
            return _EPOCH + timedelta(0, value)
        if magnitude < 10**14:
            return _EPOCH + timedelta(0, 0, 0, value)
        if magnitude < 10**17:
            return _EPOCH + timedelta(0, 0, value)
        return _EPOCH + timedelta(0, 0, value // 1000)
    if value.__class__ is str:
        return _datetime_from_iso(value)
    raise ValueError("expected an integer epoch or an ISO-8601 string")


def _date_hint(value: Any) -> date:
    if value.__class__ is str:
        return date.fromisoformat(value)
    return _date_from_days(value)


def _hint_converter(column: str, ch_type: Any) -> Converter | None:
    if ch_type.__class__ is not str:
        raise DecodeError(f"column_types[{column!r}]: expected a ClickHouse type string, got {_show(ch_type)}")
    while match := _WRAPPER_TYPE.fullmatch(ch_type):
        ch_type = match.group(1)
    if match := _DECIMAL_TYPE.fullmatch(ch_type):
        precision, scale = int(match.group(1)), int(match.group(2) or 0)
    elif match := _DECIMAL_N_TYPE.fullmatch(ch_type):
        precision, scale = _DECIMAL_N_PRECISION[match.group(1)], int(match.group(2))
    elif _DATETIME_TYPE.fullmatch(ch_type):
        return _datetime_hint
    elif _DATE_TYPE.fullmatch(ch_type):
        return _date_hint
    elif ch_type.lstrip().lower().startswith(("decimal", "datetime", "date")):
        # Passing such a column through unconverted would hide a typo in the spec.
        raise DecodeError(f"column_types[{column!r}]: cannot parse ClickHouse type {ch_type!r}")
    else:
        return None
    if not (1 <= precision <= 76 and scale <= precision):
        raise DecodeError(f"column_types[{column!r}]: invalid precision/scale in {ch_type!r}")
    return _decimal_hint(precision, scale)


def _hint_converters(column_types: Mapping[str, str] | None) -> Converters:
    if not column_types:
        return _NO_CONVERTERS
    items = tuple(column_types.items())
    try:
        converters = _hint_cache.get(items)
    except TypeError:
        raise DecodeError("column_types: names and types must be strings") from None
    if converters is None:
        compiled = []
        for column, ch_type in items:
            converter = _hint_converter(column, ch_type)
            if converter is not None:
                compiled.append((column, converter, ch_type.strip()))
        converters = tuple(compiled)
        if len(_hint_cache) >= _CACHE_MAX:
            _hint_cache.clear()
        _hint_cache[items] = converters
    return converters


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
        raise DecodeError(f"{where}.{column}: cannot read {_show(value)} as {label}: {exc}") from exc
    return row


def _loads(data: Any, where: str) -> Any:
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise DecodeError(f"{where}: not valid JSON: {exc}") from exc


def _unwrap(document: Any, where: str) -> tuple[Any, Any]:
    """Split a JsonConverter message into (schema or None, payload)."""
    if document.__class__ is not dict:
        raise DecodeError(f"{where}: expected a JSON object, got {_show(document)}")
    # Schema-enabled JsonConverter writes exactly these two keys, the schema being an object or null.
    if len(document) == 2 and "payload" in document:
        schema = document.get("schema", False)
        if schema is None or (schema.__class__ is dict and "type" in schema):
            return schema, document["payload"]
    return None, document


# --- source / position ----------------------------------------------------------------------------


def _source_int(source: dict[str, Any], name: str, limit: int) -> int:
    value = source.get(name)
    if value.__class__ is not int or not 0 <= value < limit:
        raise DecodeError(f"source.{name}: expected an integer in [0, {limit}), got {_show(value)}")
    return value


def _source_str(source: dict[str, Any], name: str) -> str:
    value = source.get(name)
    if value.__class__ is not str or not value:
        raise DecodeError(f"source.{name}: expected a non-empty string, got {_show(value)}")
    return value


_BINLOG_FILE: Final = re.compile(r".*\.(\d+)", re.S)


def _postgres_position(source: dict[str, Any]) -> int:
    return _source_int(source, "lsn", 1 << 63)


def _binlog_position(source: dict[str, Any]) -> int:
    file = _source_str(source, "file")
    match = _BINLOG_FILE.fullmatch(file)
    if match is None:
        raise DecodeError(f"source.file: expected '<basename>.<number>', got {_show(file)}")
    number = int(match.group(1))
    if number >= 1 << 19:
        raise DecodeError(f"source.file: binlog file number {number} does not fit in 19 bits")
    return number << 44 | _source_int(source, "pos", 1 << 32) << 12 | _source_int(source, "row", 1 << 12)


def _sqlite_position(source: dict[str, Any]) -> int:
    return _source_int(source, "seq", 1 << 63)


_POSITIONS: Final[dict[str, Callable[[dict[str, Any]], int]]] = {
    "postgresql": _postgres_position,
    "mysql": _binlog_position,
    "mariadb": _binlog_position,
    "sqlite": _sqlite_position,
}


# --- decode ---------------------------------------------------------------------------------------


def _side_schema(schema: dict[str, Any], side: str) -> Any:
    fields = schema.get("fields")
    if fields.__class__ is not list:
        raise DecodeError(f"value.schema.fields: expected a list, got {_show(fields)}")
    for field in fields:
        if field.__class__ is dict and field.get("field") == side:
            return field
    raise DecodeError(f"value.schema: no '{side}' field although the payload has one")


def _row(
    payload: dict[str, Any], side: str, schema: dict[str, Any] | None, hints: Converters, toast: bool
) -> dict[str, Any] | None:
    row = payload.get(side)
    if row is None:
        return None
    if row.__class__ is not dict:
        raise DecodeError(f"{side}: expected an object or null, got {_show(row)}")
    if schema is None:
        return _convert_row(row, hints, side, toast)
    return _convert_row(row, _struct_converters(_side_schema(schema, side), f"value.schema.{side}"), side, toast)


def _key(
    key: Any,
    row: dict[str, Any] | None,
    row_side: str,
    pk_columns: Sequence[str],
    column_types: Mapping[str, str] | None,
    toast: bool,
) -> dict[str, Any]:
    if key is not None:
        schema, payload = _unwrap(_loads(key, "key"), "key")
        if payload is not None:
            if payload.__class__ is not dict:
                raise DecodeError(f"key: expected an object payload, got {_show(payload)}")
            if schema is None:
                return _convert_row(payload, _hint_converters(column_types), "key", toast)
            return _convert_row(payload, _struct_converters(schema, "key.schema"), "key", toast)
    if row is None:
        raise DecodeError("key: no key message and no before/after row to take pk_columns from")
    if isinstance(pk_columns, str):
        pk_columns = (pk_columns,)
    try:
        return {column: row[column] for column in pk_columns}
    except KeyError as exc:
        raise DecodeError(f"key: no key message and primary-key column {exc} is missing from {row_side}") from None


def _decode(
    key: Any, value: Any, column_types: Mapping[str, str] | None, pk_columns: Sequence[str]
) -> Change | None:
    schema, payload = _unwrap(_loads(value, "value"), "value")
    if payload is None:
        return None
    if payload.__class__ is not dict:
        raise DecodeError(f"value: expected an object payload, got {_show(payload)}")

    op = payload.get("op")
    if op.__class__ is not str or op not in _OPS:
        raise DecodeError(f"op: expected one of c, u, d, r, got {_show(op)}")
    source = payload.get("source")
    if source.__class__ is not dict:
        raise DecodeError(f"source: expected an object, got {_show(source)}")
    connector = _source_str(source, "connector")
    position_of = _POSITIONS.get(connector)
    if position_of is None:
        raise DecodeError(f"source.connector: unsupported connector {connector!r}")
    position = position_of(source)
    source_ts_ms = source.get("ts_ms")
    if source_ts_ms.__class__ is not int:
        raise DecodeError(f"source.ts_ms: expected an integer, got {_show(source_ts_ms)}")
    flag = source.get("snapshot")
    snapshot = op == "r" or (flag.__class__ is str and flag in _SNAPSHOT_VALUES)

    hints = _hint_converters(column_types) if schema is None else _NO_CONVERTERS
    toast = connector == "postgresql"
    before = _row(payload, "before", schema, hints, toast)
    after = _row(payload, "after", schema, hints, toast)
    if after is None and op != "d":
        raise DecodeError(f"after: required for op {op!r}")

    key_row, key_side = (after, "after") if after is not None else (before, "before")
    return Change(
        source=_source_str(source, "name"),
        connector=connector,
        table=_source_str(source, "table"),
        op=op,
        key=_key(key, key_row, key_side, pk_columns, column_types, toast),
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
    column_types: Mapping[str, str] | None = None,
    pk_columns: Sequence[str] = ("id",),
) -> Change | None:
    """Decode one Debezium record; ``None`` for a tombstone, :class:`DecodeError` if malformed."""
    if value is None:
        return None
    try:
        return _decode(key, value, column_types, pk_columns)
    except DecodeError:
        raise
    except Exception as exc:
        # Every check above should have produced a DecodeError; this keeps the contract if one is missed.
        raise DecodeError(f"malformed record ({type(exc).__name__}: {exc})") from exc
