"""ClickHouse column types as the pipeline uses them, in one place.

Rows travel between stages in a *canonical* JSON form, so that every stage, the sink and the
ground-truth check agree on one spelling of each value:

=============  ==========================  =========================================
type           canonical value             why
=============  ==========================  =========================================
Int*/UInt*     int                         exact
String         str
Decimal(P, S)  str, exactly S decimals     JSON numbers are floats; strings stay exact
DateTime       "YYYY-MM-DD HH:MM:SS" (UTC) what both ClickHouse 18.16 and chdb parse
Date           "YYYY-MM-DD"
Float32/64     float
=============  ==========================  =========================================

Only types that the Debian ClickHouse 18.16 server and chdb both support are accepted
(no LowCardinality, no DateTime64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Callable

_DECIMAL = re.compile(r"^Decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_INTS = {f"{p}Int{b}" for p in ("", "U") for b in (8, 16, 32, 64)}
# Decimal(38, S) needs more than the default 28 digits of precision to be quantized exactly.
_WIDE = Context(prec=80)


class TypeSpecError(ValueError):
    """A column type the pipeline cannot store in both ClickHouse engines."""


class ValueTypeError(ValueError):
    """A value that does not fit its column type."""


@dataclass(frozen=True, slots=True)
class ColumnType:
    name: str
    kind: str  # int | str | decimal | datetime | date | float
    scale: int = 0
    precision: int = 0

    def canonical(self, value: Any) -> Any:
        """Any value the decoder produces -> the canonical JSON value (None stays None)."""
        if value is None:
            return None
        try:
            return _CANONICAL[self.kind](self, value)
        except (ValueError, TypeError, InvalidOperation, OverflowError) as exc:
            raise ValueTypeError(f"{value!r} is not a valid {self.name}: {exc}") from None

    @property
    def default(self) -> Any:
        """Canonical filler for columns of a deleted row whose last image is unknown."""
        return {"int": 0, "str": "", "decimal": "0", "datetime": "1970-01-01 00:00:00",
                "date": "1970-01-01", "float": 0.0}[self.kind]


def parse_type(name: str) -> ColumnType:
    if not isinstance(name, str):
        raise TypeSpecError(f"a column type is a string like 'Int64', not {name!r}")
    name = name.strip()
    if name in _INTS:
        return ColumnType(name, "int")
    if name == "String":
        return ColumnType(name, "str")
    if name in ("Float32", "Float64"):
        return ColumnType(name, "float")
    if name == "DateTime":
        return ColumnType(name, "datetime")
    if name == "Date":
        return ColumnType(name, "date")
    match = _DECIMAL.match(name)
    if match:
        precision, scale = int(match[1]), int(match[2])
        if not 0 < precision <= 38 or scale > precision:
            raise TypeSpecError(f"bad precision/scale in {name}")
        return ColumnType(f"Decimal({precision}, {scale})", "decimal", scale, precision)
    raise TypeSpecError(
        f"unsupported column type {name!r}: use (U)Int8..64, String, Float32/64, Decimal(P, S), "
        "DateTime or Date (what ClickHouse 18.16 and chdb both support)"
    )


def _canonical_int(_: ColumnType, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, str)):
        return int(value)
    if isinstance(value, (float, Decimal)) and value == int(value):
        return int(value)
    raise ValueError("not an integer")


def _canonical_decimal(t: ColumnType, value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError("not a finite number")
    quantized = number.quantize(Decimal(1).scaleb(-t.scale), context=_WIDE)
    if len(quantized.as_tuple().digits) > t.precision:
        raise ValueError(f"more than {t.precision} digits")
    # Fixed notation with exactly S decimals (str() would write 1E-7), and zero has one sign.
    return format(quantized if quantized else abs(quantized), "f")


def _canonical_datetime(_: ColumnType, value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError("not a timestamp")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(" ", "seconds")


def _canonical_date(_: ColumnType, value: Any) -> str:
    if isinstance(value, datetime):
        value = value.date()
    elif isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if not isinstance(value, date):
        raise ValueError("not a date")
    return value.isoformat()


_CANONICAL: dict[str, Callable[[ColumnType, Any], Any]] = {
    "int": _canonical_int,
    "str": lambda _, v: v if isinstance(v, str) else str(v),
    "decimal": _canonical_decimal,
    "datetime": _canonical_datetime,
    "date": _canonical_date,
    "float": lambda _, v: float(v),
}
