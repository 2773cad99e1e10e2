"""Connect's JSON encodings of values -> Python values: what the ``schema`` of a schema-enabled
JsonConverter message says, and what a spec column type says of a schemaless one.

With a Connect schema, each field's logical type (its schema ``name``) selects the conversion:
``Decimal`` (base64 unscaled integer + ``parameters.scale``) and ``VariableScaleDecimal`` ->
:class:`decimal.Decimal` with exactly the source scale; ``Date`` -> :class:`datetime.date`;
``Timestamp``/``MicroTimestamp``/``NanoTimestamp``/``ZonedTimestamp`` -> naive UTC
:class:`datetime.datetime` (nanoseconds are floored to microseconds, Python's resolution);
``Time``/``MicroTime``/``NanoTime`` -> :class:`datetime.time`.  Arrays of those types are
converted element-wise.  Everything else is kept as JSON gives it.

Without a schema, the spec's column type (``cdcapp.model.types``) is the hint:

* ``Decimal(P,S)``: a string that is a decimal literal ("12.30", "12", "-1e3") is read as a
  number; any other string is read as Debezium's base64 unscaled integer with scale S.  (An
  all-digit string whose length is a multiple of 4 is also valid base64; it is read as a number,
  because integer-valued decimal strings are far more common than such base64 values.  Enable
  schemas, or ``decimal.handling.mode=string``, to avoid the question entirely.)  ints and floats
  (via ``str``) are accepted too.
* ``DateTime``: an ISO-8601 string (offset optional; none means UTC) or an integer epoch whose
  unit is chosen by magnitude: ``|v| < 1e11`` seconds, ``< 1e14`` millis, ``< 1e17`` micros,
  otherwise nanos.  Every instant from 1973-03-03 to the year 5138 (and its mirror before
  1966-10-31) is therefore read right whatever its unit; a milli/micro/nano value closer to 1970
  than that is misread as the next coarser unit.
* ``Date``: integer days since 1970-01-01 or ``YYYY-MM-DD``.
* any other type: as JSON gives it (the column type's canonical form takes it from there).

Per struct schema the field converters are compiled once and kept in a small cache keyed by
(schema name, field count).  A hit is confirmed by comparing the cached ``fields`` list with the
message's (one C-level deep ``==``), so a schema that changes under the same name and field count
(ALTER COLUMN ... TYPE) is recompiled rather than misread.
"""

from __future__ import annotations

import re
from binascii import a2b_base64
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any, Final

from cdcapp.model.types import ColumnType


class DecodeError(ValueError):
    """A record that is not a well-formed Debezium change event; the message names the field."""

    #: the row column whose value could not be read, when that is what failed
    column: str | None = None


Converter = Callable[[Any], Any]
#: (column, converter, label for error messages) for each column that needs converting.
Converters = tuple[tuple[str, Converter, str], ...]

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
_MICROS_PER_DAY: Final = 86_400_000_000
# scaleb() rounds to the context precision; this one is large enough never to round.
_EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

# A worker sees a few schemas per table; the bound only guards against unbounded growth.
_CACHE_MAX: Final = 256
_schema_cache: dict[tuple[str | None, int], tuple[list[Any], Converters]] = {}


def show(value: Any) -> str:
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


def struct_converters(schema: Any, where: str) -> Converters:
    if schema.__class__ is not dict:
        raise DecodeError(f"{where}: expected a struct schema object, got {show(schema)}")
    fields = schema.get("fields")
    if fields.__class__ is not list:
        raise DecodeError(f"{where}.fields: expected a list, got {show(fields)}")
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


# --- spec column types -> converters for schemaless messages ----------------------------------------

_DECIMAL_LITERAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _decimal_hint(scale: int) -> Converter:
    exponent = -scale

    def convert(value: Any) -> Decimal:
        cls = value.__class__
        if cls is str:
            if _DECIMAL_LITERAL.fullmatch(value):
                return Decimal(value)
            return Decimal(_unscaled(value)).scaleb(exponent, _EXACT)
        if cls is int:
            return Decimal(value)
        if cls is float:
            return Decimal(str(value))
        raise ValueError("expected a decimal string, base64 string, int or float")

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


def hint_reader(column_type: ColumnType) -> Converter | None:
    """How a schemaless value of this column type is encoded, or None when JSON gives it as is."""
    if column_type.kind == "decimal":
        return _decimal_hint(column_type.scale)
    if column_type.kind == "datetime":
        return _datetime_hint
    if column_type.kind == "date":
        return _date_hint
    return None
