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

A value that the type cannot hold exactly is refused (``ValueTypeError``), never wrapped, clamped
or rounded the way ClickHouse and its drivers would do without a word: integers outside the
type's range, decimals with more digits or decimal places than the type keeps, dates and times
outside 1970-01-01 .. 2105-12-31 (the range the 18.16 server's date table and chdb share),
and strings that are not valid UTF-8. A DateTime keeps whole seconds: fractions are cut, as the
type defines (a source timestamp normally has microseconds; refusing them would refuse every row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Callable

_DECIMAL = re.compile(r"^Decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
#: integer type -> (lowest, highest) value it holds
_INTS = {
    **{f"Int{b}": (-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)},
    **{f"UInt{b}": (0, (1 << b) - 1) for b in (8, 16, 32, 64)},
}
_FIRST_DAY = date(1970, 1, 1)
_LAST_DAY = date(2105, 12, 31)
# Decimal(38, S) needs more than the default 28 digits of precision to be quantized exactly.
_WIDE = Context(prec=80)
#: scale -> the exponent a decimal of that scale is quantized to
_EXPONENTS = tuple(Decimal(1).scaleb(-scale) for scale in range(39))


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
    #: integers: the range the type holds
    low: int = 0
    high: int = 0

    def canonical(self, value: Any) -> Any:
        """Any value the decoder produces -> the canonical JSON value (None stays None)."""
        if value is None:
            return None
        try:
            return _CANONICAL[self.kind](self, value)
        except (ValueError, TypeError, InvalidOperation, OverflowError) as exc:
            raise ValueTypeError(f"{value!r} is not a valid {self.name}: {exc}") from None

    def already_canonical(self) -> Callable[[Any], bool] | None:
        """A cheap test that holds only for values ``canonical`` returns unchanged (ints in range,
        ASCII strings, floats, decimal strings in canonical form), so that the decoder can skip
        the conversion for most values; it may say no to a canonical value. None for the types
        without one (dates and times always convert)."""
        if self.kind == "int":
            low, high = self.low, self.high
            return lambda value: value.__class__ is int and low <= value <= high
        if self.kind == "str":
            return lambda value: value.__class__ is str and value.isascii()
        if self.kind == "float":
            return lambda value: value.__class__ is float
        if self.kind == "decimal":
            literal = _canonical_decimal_pattern(self.precision, self.scale).fullmatch
            return lambda value: value.__class__ is str and literal(value) is not None
        return None

    def computed(self, value: Any) -> Any:
        """A computed value (a measure, or the ground truth's SQL, which may compute in floats) ->
        canonical. A decimal is first taken to the type's scale (half-even): there the spec's type
        is the rounding asked for, not a value to refuse."""
        if self.kind == "decimal" and isinstance(value, (Decimal, float)) and not isinstance(value, bool):
            number = value if isinstance(value, Decimal) else Decimal(repr(value))
            if number.is_finite():
                # Already at the type's scale: only the digits are left to check (a fact row's
                # measure, computed on every fact row).
                try:
                    return _decimal_text(self, number.quantize(_EXPONENTS[self.scale], context=_WIDE))
                except ValueError as exc:
                    raise ValueTypeError(f"{value!r} is not a valid {self.name}: {exc}") from None
        return self.canonical(value)

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
        low, high = _INTS[name]
        return ColumnType(name, "int", low=low, high=high)
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


def _canonical_decimal_pattern(precision: int, scale: int) -> re.Pattern[str]:
    """What ``_canonical_decimal`` writes: no leading zeros, at most P - S integer digits, exactly
    S decimals, and no negative zero."""
    whole = "0" if precision == scale else f"(?:0|[1-9][0-9]{{0,{precision - scale - 1}}})"
    zero = "0" + ("." + "0" * scale if scale else "")
    return re.compile(f"(?!-{re.escape(zero)}$)-?{whole}" + (f"\\.[0-9]{{{scale}}}" if scale else ""))


def _canonical_int(t: ColumnType, value: Any) -> int:
    if isinstance(value, (int, str)):  # bool is an int
        number = int(value)
    elif isinstance(value, (float, Decimal)) and value == int(value):
        number = int(value)
    else:
        raise ValueError("not an integer")
    if not t.low <= number <= t.high:
        raise ValueError(f"out of range {t.low}..{t.high}")
    return number


def _canonical_decimal(t: ColumnType, value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError("not a finite number")
    quantized = number.quantize(_EXPONENTS[t.scale], context=_WIDE)
    if quantized != number:
        raise ValueError(f"more than {t.scale} decimal places (it would be rounded)")
    return _decimal_text(t, quantized)


def _decimal_text(t: ColumnType, quantized: Decimal) -> str:
    """A decimal already at the type's scale, checked for its digits and written canonically."""
    # adjusted() is the exponent of the leading digit: digits = adjusted + scale + 1 (zero: 1 digit).
    if quantized and quantized.adjusted() + t.scale + 1 > t.precision:
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
    if not _FIRST_DAY <= value.date() <= _LAST_DAY:
        raise ValueError(f"outside {_FIRST_DAY} .. {_LAST_DAY} 23:59:59")
    return value.isoformat(" ", "seconds")


def _canonical_date(_: ColumnType, value: Any) -> str:
    if isinstance(value, datetime):
        value = value.date()
    elif isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if not isinstance(value, date):
        raise ValueError("not a date")
    if not _FIRST_DAY <= value <= _LAST_DAY:
        raise ValueError(f"outside {_FIRST_DAY} .. {_LAST_DAY}")
    return value.isoformat()


def _canonical_str(_: ColumnType, value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")  # strict: bytes that are not UTF-8 raise
    text = value if isinstance(value, str) else str(value)
    # A str can still hold lone surrogates (from surrogateescape decoding), which are not UTF-8.
    text.encode("utf-8")
    return text


_CANONICAL: dict[str, Callable[[ColumnType, Any], Any]] = {
    "int": _canonical_int,
    "str": _canonical_str,
    "decimal": _canonical_decimal,
    "datetime": _canonical_datetime,
    "date": _canonical_date,
    "float": lambda _, v: float(v),
}
