"""Unit tests for cdcapp.debezium.decode: Debezium 3.x JsonConverter envelopes -> Change."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import pickle
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcapp.debezium.connect import hint_reader
from cdcapp.debezium.decode import UNAVAILABLE, Change, DecodeError, decode
from cdcapp.model.types import ColumnType, TypeSpecError, ValueTypeError, parse_type

FIXTURES = Path(__file__).parent / "fixtures" / "debezium"
EPOCH = datetime(1970, 1, 1)


def typed(types: dict[str, str]) -> dict[str, ColumnType]:
    """``columns`` for :func:`decode` from spec type strings."""
    return {name: parse_type(type_name) for name, type_name in types.items()}


def seconds(moment: datetime) -> str:
    """The canonical DateTime spelling, written independently of cdcapp.model.types."""
    return moment.replace(microsecond=0).isoformat(sep=" ")


PG_TYPES = {
    "id": "Int32",
    "customer_id": "Int64",
    "total": "Decimal(12, 2)",
    "status": "String",
    "created_at": "DateTime",
    "updated_at": "DateTime",
    "ship_date": "Date",
}
MY_TYPES = {
    "id": "Int32",
    "credit_limit": "Decimal(18, 2)",
    "created_at": "DateTime",
    "last_login": "DateTime",
    "updated_at": "DateTime",
    "birth_date": "Date",
    "active": "UInt8",
}
PG_COLUMNS = typed(PG_TYPES)
MY_COLUMNS = typed(MY_TYPES)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


PG = load("postgres_orders")
MY_RECORDED = load("mariadb_customers")


def _born_1980(fixture: dict[str, Any]) -> dict[str, Any]:
    """The recorded events with birth date 1980-01-01 instead of 1959-01-01, which a ClickHouse
    Date cannot hold (test_a_date_clickhouse_cannot_hold_is_refused_by_name)."""
    fixture = copy.deepcopy(fixture)
    for event in fixture["events"].values():
        for side in ("before", "after"):
            if (event["payload"] or {}).get(side):
                event["payload"][side]["birth_date"] = 3652
    return fixture


MY = _born_1980(MY_RECORDED)


def message(fixture: dict[str, Any], event: str, *, schemas: bool = True) -> tuple[bytes, bytes]:
    """(key, value) bytes as JsonConverter writes them, with or without the schema envelope."""
    ev = fixture["events"][event]
    if schemas:
        key = {"schema": fixture["key_schema"], "payload": ev["key"]}
        value = {"schema": fixture["value_schema"], "payload": ev["payload"]}
    else:
        key, value = ev["key"], ev["payload"]
    return orjson.dumps(key), orjson.dumps(value)


def raw_value(fixture: dict[str, Any], event: str, *, schemas: bool = True) -> dict[str, Any]:
    """The value message as a dict, to modify before encoding."""
    payload = copy.deepcopy(fixture["events"][event]["payload"])
    return {"schema": copy.deepcopy(fixture["value_schema"]), "payload": payload} if schemas else payload


def java_decimal_b64(unscaled: int, pad: bool = False) -> str:
    """Base64 of BigInteger.toByteArray(), as Connect's Decimal writes the unscaled value.

    ``pad`` adds a redundant sign byte, which a reader must accept as well.
    """
    length = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1 + pad
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def sqlite_value(after: dict[str, Any], fields: list[dict[str, Any]] | None = None, **source: Any) -> bytes:
    """A minimal relay-style event; with ``fields`` it is wrapped in a struct schema."""
    payload = {
        "op": "c",
        "before": None,
        "after": after,
        "source": {"connector": "sqlite", "name": "sqlite", "table": "t", "ts_ms": 1, "seq": 1, **source},
    }
    if fields is None:
        return orjson.dumps(payload)
    row_schema = {"type": "struct", "name": "sqlite.t.Value", "optional": True, "fields": fields}
    schema = {
        "type": "struct",
        "name": "sqlite.t.Envelope",
        "fields": [dict(row_schema, field="before"), dict(row_schema, field="after")],
    }
    return orjson.dumps({"schema": schema, "payload": payload})


KEY = b'{"id": 1}'


def convert(row: dict[str, Any], fields: list[dict[str, Any]] | None = None, **options: Any) -> dict[str, Any]:
    """The decoded ``after`` of a one-row relay event."""
    return decode(KEY, sqlite_value(row, fields), **options).after


def field(name: str, type_: str = "int64", logical: str | None = None, **extra: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"type": type_, "optional": True, "field": name, **extra}
    if logical:
        f["name"] = logical
    return f


# --- PostgreSQL ---------------------------------------------------------------------------------


PG_AFTER = {
    "id": 1001,
    "customer_id": 42,
    "total": Decimal("1234.50"),
    "status": "paid",
    "note": "leave at the door",
    "attachment": base64.b64encode(b"\x00\x01pdf").decode(),
    "created_at": datetime(2024, 6, 1, 12, 0, 0),
    "updated_at": datetime(2024, 6, 1, 12, 0, 0, 123456),
    "ship_date": date(2024, 6, 3),
    "discount": Decimal("12.345"),
    "pickup_time": time(9, 30, 15, 250000),
    "tags": ["gift", "rush"],
    "blackout_dates": [date(2024, 6, 2), date(2024, 6, 3)],
}
# The same row with PG_COLUMNS: typed columns canonical, the others as without columns.
PG_CANONICAL = {
    **PG_AFTER,
    "total": "1234.50",
    "created_at": "2024-06-01 12:00:00",
    "updated_at": "2024-06-01 12:00:00",  # the sub-second part is dropped
    "ship_date": "2024-06-03",
}


def test_postgres_create_with_schema_converts_every_logical_type():
    change = decode(*message(PG, "create"))
    assert change == Change(
        source="postgres",
        connector="postgresql",
        table="orders",
        op="c",
        key={"id": 1001},
        before=None,
        after=PG_AFTER,
        position=24023184,
        source_ts_ms=1717243200123,
        snapshot=False,
    )
    assert str(change.after["total"]) == "1234.50"
    assert change.after["total"].as_tuple().exponent == -2


def test_postgres_create_with_schema_and_columns_gives_canonical_values():
    change = decode(*message(PG, "create"), columns=PG_COLUMNS)
    assert change == dataclasses.replace(decode(*message(PG, "create")), after=PG_CANONICAL)
    assert type(change.after["id"]) is int and type(change.key["id"]) is int


def test_postgres_create_without_schema_uses_columns():
    change = decode(*message(PG, "create", schemas=False), columns=PG_COLUMNS)
    # Typed columns: the same canonical values as when the schema says how they are encoded.
    assert {name: change.after[name] for name in PG_TYPES} == {name: PG_CANONICAL[name] for name in PG_TYPES}
    # Not in columns: kept exactly as JSON gives it.
    assert change.after["discount"] == {"scale": 3, "value": "MDk="}
    assert change.after["pickup_time"] == 34215250000
    assert change.after["blackout_dates"] == [19876, 19877]
    assert change.key == {"id": 1001}
    assert (change.position, change.op, change.snapshot) == (24023184, "c", False)


def test_postgres_snapshot_read():
    change = decode(*message(PG, "snapshot_read"))
    assert (change.op, change.snapshot, change.position) == ("r", True, 24015360)
    assert change.after == PG_AFTER


def test_postgres_update_with_unchanged_toast_placeholders():
    change = decode(*message(PG, "update_toast"))
    assert change.op == "u" and change.before is None
    assert change.after["note"] is UNAVAILABLE
    assert change.after["attachment"] is UNAVAILABLE  # bytea: base64 of the placeholder bytes
    assert change.after["tags"] is UNAVAILABLE  # text[]: one-element array
    assert change.after["total"] == Decimal("-2.30")
    assert change.after["updated_at"] == datetime(2024, 6, 2, 6, 15)
    assert change.position == 24031000


@pytest.mark.parametrize("schemas", [True, False], ids=["schema", "bare"])
def test_toast_placeholder_with_columns(schemas):
    # Typed or not, a placeholder column is UNAVAILABLE rather than a canonical value of the text.
    columns = {**PG_COLUMNS, **typed({"note": "String", "attachment": "String"})}
    change = decode(*message(PG, "update_toast", schemas=schemas), columns=columns)
    assert change.after["note"] is UNAVAILABLE
    assert change.after["attachment"] is UNAVAILABLE
    assert change.after["tags"] is UNAVAILABLE
    assert change.after["total"] == "-2.30"
    assert change.after["updated_at"] == "2024-06-02 06:15:00"
    assert change.after["status"] == "shipped"
    # numeric is TOASTable too: the placeholder in a Decimal column is not read as base64.
    value = raw_value(PG, "update_toast", schemas=schemas)
    (value["payload"] if schemas else value)["after"]["total"] = "__debezium_unavailable_value"
    assert decode(None, orjson.dumps(value), columns=columns).after["total"] is UNAVAILABLE


PLACEHOLDER_BYTES = b"__debezium_unavailable_value"


@pytest.mark.parametrize(
    "shape",
    [
        list(PLACEHOLDER_BYTES),
        [base64.b64encode(PLACEHOLDER_BYTES).decode()],
        {"__debezium_unavailable_value": "__debezium_unavailable_value"},
        # Java's UUID.nameUUIDFromBytes: an MD5-based version 3 UUID.
        [str(uuid.UUID(bytes=hashlib.md5(PLACEHOLDER_BYTES).digest(), version=3))],
    ],
    ids=["int-array", "bytea-array", "hstore", "uuid-array"],
)
def test_toast_placeholder_container_shapes(shape):
    value = raw_value(PG, "update_toast", schemas=False)
    value["after"]["col"] = shape
    assert decode(None, orjson.dumps(value)).after["col"] is UNAVAILABLE


def test_placeholder_text_is_an_ordinary_value_outside_postgresql():
    value = raw_value(MY, "update", schemas=False)
    value["after"]["name"] = "__debezium_unavailable_value"
    assert decode(None, orjson.dumps(value)).after["name"] == "__debezium_unavailable_value"


def test_postgres_delete_has_before_only():
    change = decode(*message(PG, "delete"))
    assert change.op == "d" and change.after is None
    assert change.before["id"] == 1001
    assert change.before["total"] == Decimal("0.00") and str(change.before["total"]) == "0.00"
    assert change.before["note"] is None
    assert change.key == {"id": 1001}
    assert change.position == 24040000
    typed_before = decode(*message(PG, "delete"), columns=PG_COLUMNS).before
    assert {name: typed_before[name] for name in PG_TYPES} == {
        "id": 1001,
        "customer_id": 0,
        "total": "0.00",
        "status": "",
        "created_at": "1970-01-01 00:00:00",
        "updated_at": None,
        "ship_date": None,
    }


def test_delete_without_key_message_takes_key_from_before():
    _, value = message(PG, "delete")
    assert decode(None, value).key == {"id": 1001}


def test_tombstone_is_none():
    key, _ = message(PG, "delete")
    assert decode(key, None) is None
    assert decode(None, None) is None


def test_schema_wrapped_null_payload_is_none():
    assert decode(None, b'{"schema":null,"payload":null}') is None


# --- MariaDB ------------------------------------------------------------------------------------


MY_AFTER = {
    "id": 7,
    "name": "Ada",
    "credit_limit": Decimal("5000.00"),
    "created_at": datetime(2024, 6, 1, 12, 0),
    "last_login": datetime(2024, 6, 1, 12, 1, 0, 123456),
    "updated_at": datetime(2024, 6, 1, 12, 1),
    "birth_date": date(1980, 1, 1),
    "active": 1,
}
MY_CANONICAL = {
    **MY_AFTER,
    "credit_limit": "5000.00",
    "created_at": "2024-06-01 12:00:00",
    "last_login": "2024-06-01 12:01:00",
    "updated_at": "2024-06-01 12:01:00",
    "birth_date": "1980-01-01",
}
MY_RAW = MY["events"]["create"]["payload"]["after"]
# (schemas, columns, the create row, credit_limit after the update)
MY_FORMS = [
    (True, None, MY_AFTER, Decimal("-0.01")),
    (True, MY_COLUMNS, MY_CANONICAL, "-0.01"),
    (False, MY_COLUMNS, MY_CANONICAL, "-0.01"),
    (False, None, MY_RAW, "/w=="),
]
MY_FORM_IDS = ["schema", "schema-columns", "bare-columns", "bare"]


def binlog_position(file_number: int, pos: int, row: int) -> int:
    return file_number << 44 | pos << 12 | row


@pytest.mark.parametrize(("schemas", "columns", "after"), [f[:3] for f in MY_FORMS], ids=MY_FORM_IDS)
def test_mariadb_create(schemas, columns, after):
    change = decode(*message(MY, "create", schemas=schemas), columns=columns)
    assert change == Change(
        source="mariadb",
        connector="mariadb",
        table="customers",
        op="c",
        key={"id": 7},
        before=None,
        after=after,
        position=binlog_position(12, 3456, 0),
        source_ts_ms=1717243200000,
        snapshot=False,
    )


@pytest.mark.parametrize("schemas", [True, False])
def test_a_date_clickhouse_cannot_hold_is_refused_by_name(schemas):
    with pytest.raises(DecodeError, match=r"after\.birth_date: cannot read .* as Date: .*outside 1970-01-01"):
        decode(*message(MY_RECORDED, "create", schemas=schemas), columns=MY_COLUMNS)


@pytest.mark.parametrize(("schemas", "columns", "row", "credit"), MY_FORMS, ids=MY_FORM_IDS)
def test_mariadb_update_and_delete(schemas, columns, row, credit):
    update = decode(*message(MY, "update", schemas=schemas), columns=columns)
    assert update.before == row
    assert update.after["credit_limit"] == credit and type(update.after["credit_limit"]) is type(credit)
    assert update.position == binlog_position(12, 8123, 3)
    delete = decode(*message(MY, "delete", schemas=schemas), columns=columns)
    assert (delete.op, delete.before, delete.after) == ("d", row, None)
    assert delete.position > update.position


def test_mariadb_snapshot_and_mysql_connector_name():
    snap = decode(*message(MY, "snapshot_read"))
    assert snap.snapshot and snap.op == "r"
    assert snap.position == binlog_position(12, 1843, 0)
    value = raw_value(MY, "create")
    value["payload"]["source"].update(connector="mysql", file="mysql-bin.000003", snapshot="last_in_data_collection")
    change = decode(None, orjson.dumps(value))
    assert change.connector == "mysql" and change.snapshot
    assert change.position == binlog_position(3, 3456, 0)


def test_binlog_positions_order_by_file_then_pos_then_row():
    positions = []
    for file, pos, row in [
        ("a.000009", 2**32 - 1, 4095),
        ("a.000010", 4, 0),
        ("a.000010", 4, 1),
        ("a.000010", 5, 0),
        ("a.524287", 2**32 - 1, 4095),
    ]:
        value = raw_value(MY, "create", schemas=False)
        value["source"].update(file=file, pos=pos, row=row)
        positions.append(decode(None, orjson.dumps(value)).position)
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert positions[-1] == 2**63 - 1


# --- keys, extra columns, schema changes ------------------------------------------------------


def test_bare_key_is_converted_with_columns():
    value = sqlite_value({"day": 19877, "n": 1})
    change = decode(b'{"day": 19877}', value, columns=typed({"day": "Date"}))
    assert change.key == {"day": "2024-06-03"}
    assert change.after == {"day": "2024-06-03", "n": 1}


def test_schema_key_is_converted_with_key_schema():
    key = {"schema": {"type": "struct", "name": "k", "fields": [field("day", "int32", "io.debezium.time.Date")]},
           "payload": {"day": 0}}
    change = decode(orjson.dumps(key), sqlite_value({"day": 0}))
    assert change.key == {"day": date(1970, 1, 1)}
    typed_change = decode(orjson.dumps(key), sqlite_value({"day": 0}), columns=typed({"day": "Date"}))
    assert typed_change.key == {"day": "1970-01-01"}


def test_key_value_that_does_not_fit_its_column_raises():
    with pytest.raises(DecodeError) as info:
        decode(b'{"id": "x"}', sqlite_value({"n": 1}), columns=typed({"id": "Int64"}))
    assert "key.id" in str(info.value) and "Int64" in str(info.value)


def test_the_row_gives_the_key_when_it_has_every_key_column():
    """The key message is parsed only when the row lacks a key column: it costs a JSON parse."""
    assert decode(b'{"id": 99}', sqlite_value({"id": 1}), columns=typed({"id": "Int64"})).key == {"id": 1}
    assert decode(b'{"id": 99}', sqlite_value({"n": 1})).key == {"id": 99}


def test_missing_key_uses_pk_columns_from_after():
    value = sqlite_value({"tenant": "a", "id": 3, "x": 1})
    assert decode(None, value, pk_columns=("tenant", "id")).key == {"tenant": "a", "id": 3}
    assert decode(None, value, pk_columns="tenant").key == {"tenant": "a"}
    assert decode(b'{"schema":null,"payload":null}', value).key == {"id": 3}
    # Taken from after, the key has after's canonical values.
    assert decode(None, sqlite_value({"id": "3"}), columns=typed({"id": "Int64"})).key == {"id": 3}


def test_unknown_extra_columns_are_kept():
    value = raw_value(PG, "create")
    value["payload"]["after"]["added_later"] = "x"
    assert decode(None, orjson.dumps(value)).after["added_later"] == "x"
    assert decode(None, orjson.dumps(value), columns=PG_COLUMNS).after["added_later"] == "x"
    # A typed column the row does not have is not added to it.
    columns = typed({"id": "Int64", "absent": "Date"})
    bare = decode(None, sqlite_value({"id": 1, "zzz": [1, {"a": 2}]}), columns=columns)
    assert bare.after == {"id": 1, "zzz": [1, {"a": 2}]}


def test_schema_change_under_same_name_is_not_served_from_stale_cache():
    total = java_decimal_b64(150)
    before_alter = [field("id"), field("total", "bytes", "org.apache.kafka.connect.data.Decimal",
                                      parameters={"scale": "2"})]
    assert decode(None, sqlite_value({"id": 1, "total": total}, before_alter)).after["total"] == Decimal("1.50")
    # ALTER TABLE ADD COLUMN: one more field under the same struct name.
    added = before_alter + [field("day", "int32", "io.debezium.time.Date")]
    after = decode(None, sqlite_value({"id": 1, "total": total, "day": 1}, added)).after
    assert after == {"id": 1, "total": Decimal("1.50"), "day": date(1970, 1, 2)}
    # ALTER COLUMN TYPE: same name, same field count, different scale.
    rescaled = [before_alter[0], dict(before_alter[1], parameters={"scale": "4"})]
    assert decode(None, sqlite_value({"id": 1, "total": total}, rescaled)).after["total"] == Decimal("0.0150")
    # ...and back again: the first shape still decodes as it did.
    assert decode(None, sqlite_value({"id": 1, "total": total}, before_alter)).after["total"] == Decimal("1.50")
    # The same with one columns mapping throughout: its typed readers follow the schema too.
    columns = typed({"total": "Decimal(12, 4)"})
    for fields, expected in [(before_alter, "1.5000"), (rescaled, "0.0150"), (before_alter, "1.5000")]:
        assert decode(None, sqlite_value({"id": 1, "total": total}, fields), columns=columns).after["total"] == expected


def test_sqlite_relay_event():
    change = decode(None, sqlite_value({"id": 9}, seq=123, snapshot="true"))
    assert (change.source, change.connector, change.position, change.snapshot) == ("sqlite", "sqlite", 123, True)


def test_unavailable_sentinel_survives_pickle_and_copy():
    assert pickle.loads(pickle.dumps(UNAVAILABLE)) is UNAVAILABLE
    assert copy.deepcopy(UNAVAILABLE) is UNAVAILABLE
    assert repr(UNAVAILABLE) == "UNAVAILABLE"


def test_change_is_frozen():
    change = decode(*message(PG, "create"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.op = "d"


# --- value conversions --------------------------------------------------------------------------

DECIMAL = "org.apache.kafka.connect.data.Decimal"


@pytest.mark.parametrize(
    ("encoded", "scale", "expected"),
    [
        ("AOY=", 2, "2.30"),
        ("/xo=", 2, "-2.30"),
        ("AA==", 2, "0.00"),
        ("AA==", 0, "0"),
        ("/w==", 3, "-0.001"),
        ("AIA=", 0, "128"),
        ("gA==", 0, "-128"),
        ("AeI6", -1, "1.23450E+6"),
    ],
)
def test_connect_decimal(encoded, scale, expected):
    fields = [field("v", "bytes", DECIMAL, parameters={"scale": str(scale), "connect.decimal.precision": "20"})]
    result = convert({"v": encoded}, fields)["v"]
    assert str(result) == expected and result.as_tuple() == Decimal(expected).as_tuple()


def test_connect_decimal_accepts_integer_scale_parameter():
    fields = [field("v", "bytes", DECIMAL, parameters={"scale": 2})]
    assert convert({"v": "AOY="}, fields)["v"] == Decimal("2.30")


@pytest.mark.parametrize(
    ("encoded", "scale", "type_name", "expected"),
    [
        ("AOY=", 2, "Decimal(12, 2)", "2.30"),
        ("/xo=", 2, "Decimal(3, 2)", "-2.30"),
        ("AA==", 2, "Decimal(12, 2)", "0.00"),
        ("/w==", 3, "Decimal(12, 3)", "-0.001"),
        ("AOY=", 2, "Decimal(12, 4)", "2.3000"),  # widened to the column's scale
        ("AeI6", -1, "Decimal(12, 0)", "1234500"),
    ],
)
def test_connect_decimal_with_a_decimal_column(encoded, scale, type_name, expected):
    fields = [field("v", "bytes", DECIMAL, parameters={"scale": str(scale)})]
    assert convert({"v": encoded}, fields, columns=typed({"v": type_name}))["v"] == expected


@pytest.mark.parametrize(("raw", "fields"), [
    ("MDk=", [field("v", "bytes", DECIMAL, parameters={"scale": "3"})]),  # 12.345 from a Connect Decimal
    ("12.345", None),
    (2.675, None),
    (0.1 + 0.2, None),  # 0.30000000000000004: a float's binary noise is not dropped either
    ("-0.001", None),
])
def test_a_decimal_with_more_places_than_its_column_is_refused_not_rounded(raw, fields):
    with pytest.raises(DecodeError, match=r"after\.v: cannot read .* as Decimal\(12, 2\): .*more than 2 decimal places"):
        convert({"v": raw}, fields, columns=typed({"v": "Decimal(12, 2)"}))


@pytest.mark.parametrize(("type_name", "low", "high"), [
    ("Int8", -128, 127), ("UInt8", 0, 255), ("Int32", -2**31, 2**31 - 1), ("UInt32", 0, 2**32 - 1),
    ("Int64", -2**63, 2**63 - 1), ("UInt64", 0, 2**64 - 1),
])
def test_integers_outside_their_type_are_refused_not_wrapped(type_name, low, high):
    assert convert({"a": low, "b": high}, columns=typed({"a": type_name, "b": type_name})) == {"a": low, "b": high}
    # JSON from Debezium holds 64-bit integers; beyond those the value arrives as text.
    for raw in [v for v in (low - 1, high + 1) if -2**63 <= v < 2**64] + [str(low - 1), str(high + 1)]:
        with pytest.raises(DecodeError, match=rf"after\.v: cannot read .* as {type_name}: .*out of range"):
            convert({"v": raw}, columns=typed({"v": type_name}))


@pytest.mark.parametrize(("type_name", "raw"), [
    ("DateTime", "1900-01-01T00:00:00Z"), ("DateTime", "2200-01-01T00:00:00Z"), ("DateTime", -1),
    ("DateTime", "1969-12-31T23:59:59Z"), ("DateTime", "2106-01-01T00:00:00Z"),
    ("Date", -1), ("Date", "2106-01-01"), ("Date", "1900-01-01"),
])
def test_dates_and_times_clickhouse_cannot_hold_are_refused_not_clamped(type_name, raw):
    with pytest.raises(DecodeError, match=rf"after\.v: cannot read .* as {type_name}: .*outside 1970-01-01"):
        convert({"v": raw}, columns=typed({"v": type_name}))


def test_the_first_and_last_moments_clickhouse_holds_are_kept():
    row = {"t0": "1970-01-01T00:00:00Z", "t1": "2105-12-31T23:59:59Z", "d0": "1970-01-01", "d1": "2105-12-31"}
    types = {"t0": "DateTime", "t1": "DateTime", "d0": "Date", "d1": "Date"}
    assert convert(dict(row), columns=typed(types)) == {
        "t0": "1970-01-01 00:00:00", "t1": "2105-12-31 23:59:59", "d0": "1970-01-01", "d1": "2105-12-31"}


def test_text_that_is_not_utf8_is_refused():
    # A str with a lone surrogate is what bytes that are not UTF-8 become under surrogateescape.
    with pytest.raises(ValueTypeError, match="not a valid String"):
        parse_type("String").canonical(b"caf\xe9".decode("utf-8", "surrogateescape"))
    with pytest.raises(ValueTypeError, match="not a valid String"):
        parse_type("String").canonical(b"caf\xe9")
    assert parse_type("String").canonical("café".encode()) == "café"


@pytest.mark.parametrize(
    ("logical", "raw", "expected"),
    [
        ("io.debezium.time.Date", -1, date(1969, 12, 31)),
        ("org.apache.kafka.connect.data.Date", 19877, date(2024, 6, 3)),
        ("io.debezium.time.Timestamp", -1, datetime(1969, 12, 31, 23, 59, 59, 999000)),
        ("org.apache.kafka.connect.data.Timestamp", 1717243200123, datetime(2024, 6, 1, 12, 0, 0, 123000)),
        ("io.debezium.time.MicroTimestamp", 1717243200123456, datetime(2024, 6, 1, 12, 0, 0, 123456)),
        ("io.debezium.time.NanoTimestamp", 1717243200123456789, datetime(2024, 6, 1, 12, 0, 0, 123456)),
        ("io.debezium.time.NanoTimestamp", -1, datetime(1969, 12, 31, 23, 59, 59, 999999)),
        ("io.debezium.time.ZonedTimestamp", "2024-06-01T12:00:00Z", datetime(2024, 6, 1, 12)),
        ("io.debezium.time.ZonedTimestamp", "2024-06-01T00:30:00-05:00", datetime(2024, 6, 1, 5, 30)),
        ("io.debezium.time.ZonedTimestamp", "2024-06-01T12:00:00.123456789+00:00", datetime(2024, 6, 1, 12, 0, 0, 123456)),
        ("io.debezium.time.Time", 45_015_250, time(12, 30, 15, 250000)),
        ("org.apache.kafka.connect.data.Time", 0, time(0)),
        ("io.debezium.time.MicroTime", 86_399_999_999, time(23, 59, 59, 999999)),
        ("io.debezium.time.NanoTime", 45_015_250_000_999, time(12, 30, 15, 250000)),
        ("io.debezium.data.VariableScaleDecimal", {"scale": 0, "value": "/w=="}, Decimal("-1")),
        ("io.debezium.data.Json", '{"a": 1}', '{"a": 1}'),
        ("io.debezium.time.MicroDuration", 5, 5),
    ],
)
def test_logical_types(logical, raw, expected):
    result = convert({"v": raw}, [field("v", "int64", logical)])["v"]
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("logical", "raw", "type_name", "expected"),
    [
        ("io.debezium.time.Date", 1, "Date", "1970-01-02"),
        ("org.apache.kafka.connect.data.Date", 19877, "DateTime", "2024-06-03 00:00:00"),
        ("io.debezium.time.Timestamp", 1999, "DateTime", "1970-01-01 00:00:01"),
        ("org.apache.kafka.connect.data.Timestamp", 1717243200123, "DateTime", "2024-06-01 12:00:00"),
        ("io.debezium.time.Timestamp", 1717243200123, "Date", "2024-06-01"),
        # The sub-second part is dropped, not rounded.
        ("io.debezium.time.MicroTimestamp", 1717243200999999, "DateTime", "2024-06-01 12:00:00"),
        ("io.debezium.time.NanoTimestamp", 1717243200123456789, "DateTime", "2024-06-01 12:00:00"),
        ("io.debezium.time.NanoTimestamp", 1_999_999_999, "DateTime", "1970-01-01 00:00:01"),
        ("io.debezium.time.ZonedTimestamp", "2024-06-01T00:30:00-05:00", "DateTime", "2024-06-01 05:30:00"),
        ("io.debezium.time.ZonedTimestamp", "2024-06-01T23:30:00-05:00", "Date", "2024-06-02"),  # the UTC day
        ("io.debezium.data.VariableScaleDecimal", {"scale": 0, "value": "/w=="}, "Decimal(10, 2)", "-1.00"),
        ("io.debezium.data.VariableScaleDecimal", {"scale": 3, "value": "MDk="}, "Decimal(10, 3)", "12.345"),
        ("io.debezium.data.Json", '{"a": 1}', "String", '{"a": 1}'),
        (None, 7, "Int32", 7),
        (None, "7", "Int64", 7),
        (None, 7, "String", "7"),
        (None, 2, "Float32", 2.0),
        (None, "2024-06-01T14:00:00+02:00", "DateTime", "2024-06-01 12:00:00"),
    ],
)
def test_logical_types_into_columns(logical, raw, type_name, expected):
    result = convert({"v": raw}, [field("v", "int64", logical)], columns=typed({"v": type_name}))["v"]
    assert result == expected and type(result) is type(expected)


ALL_TYPES = {"i": "Int64", "u": "UInt8", "s": "String", "d": "Decimal(5, 2)", "t": "DateTime", "day": "Date",
             "f": "Float64"}


def test_nulls_stay_null_for_every_converter():
    fields = [field("d", "bytes", DECIMAL, parameters={"scale": "2"}), field("t", "int64", "io.debezium.time.Timestamp")]
    assert convert({"d": None, "t": None}, fields) == {"d": None, "t": None}
    nulls = dict.fromkeys(ALL_TYPES)
    typed_fields = [*fields, field("day", "int32", "io.debezium.time.Date"), field("i"), field("u", "int16"),
                    field("s", "string"), field("f", "float64")]
    assert convert(dict(nulls), columns=typed(ALL_TYPES)) == nulls
    assert convert(dict(nulls), typed_fields, columns=typed(ALL_TYPES)) == nulls


@pytest.mark.parametrize(
    ("raw", "type_name", "expected"),
    [
        ("12.3", "Decimal(12, 2)", "12.30"),
        ("12", "Decimal(12, 2)", "12.00"),
        ("-1e2", "Decimal(12, 2)", "-100.00"),
        (".5", "Decimal(12, 2)", "0.50"),
        ("AOY=", "Decimal(12, 2)", "2.30"),
        ("/xo=", "Decimal(12, 2)", "-2.30"),
        ("gA==", "Decimal(5, 0)", "-128"),
        # All digits and a multiple of 4 long, so also valid base64: read as a number (documented).
        ("1234", "Decimal(12, 2)", "1234.00"),
        (12, "Decimal(12, 2)", "12.00"),
        (12.3, "Decimal(9, 2)", "12.30"),
        (2.5, "Decimal(12, 2)", "2.50"),
        ("7", "Decimal(5, 0)", "7"),
        ("99999.99", "Decimal(7, 2)", "99999.99"),  # exactly P digits
        ("0.5", "Decimal(38, 38)", "0.5" + "0" * 37),
    ],
)
def test_decimal_hint(raw, type_name, expected):
    result = convert({"v": raw}, columns=typed({"v": type_name}))["v"]
    assert result == expected and type(result) is str


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1717243200, "2024-06-01 12:00:00"),
        (1717243200123, "2024-06-01 12:00:00"),
        (1717243200123456, "2024-06-01 12:00:00"),
        (1717243200123456789, "2024-06-01 12:00:00"),
        (1717243200999999999, "2024-06-01 12:00:00"),  # the sub-second part is dropped, not rounded
        ("2024-06-01T12:00:00Z", "2024-06-01 12:00:00"),
        ("2024-06-01 12:00:00", "2024-06-01 12:00:00"),
        ("2024-06-01 14:00:00+02:00", "2024-06-01 12:00:00"),
        ("2024-06-01T00:30:00-05:00", "2024-06-01 05:30:00"),
        ("2024-06-01T12:00:00.5", "2024-06-01 12:00:00"),
        ("2024-06-01T12:00:00.999999Z", "2024-06-01 12:00:00"),
    ],
)
def test_datetime_hint(raw, expected):
    assert convert({"v": raw}, columns=typed({"v": "DateTime"}))["v"] == expected


def test_datetime_hint_unit_thresholds():
    # Just inside and outside each threshold documented in cdcapp.debezium.connect; a unit off by
    # 1000x moves the instant by far more than the second the canonical form resolves.
    read = hint_reader(parse_type("DateTime"))

    def at(raw: int) -> str:
        return seconds(read(raw))

    assert at(10**11 - 1) == seconds(EPOCH + timedelta(seconds=10**11 - 1))
    assert at(10**11) == seconds(EPOCH + timedelta(milliseconds=10**11))
    assert at(10**14 - 1) == seconds(EPOCH + timedelta(milliseconds=10**14 - 1))
    assert at(10**14) == seconds(EPOCH + timedelta(microseconds=10**14))
    assert at(10**17 - 1) == seconds(EPOCH + timedelta(microseconds=10**17 - 1))
    assert at(10**17) == seconds(EPOCH + timedelta(microseconds=10**14))
    assert at(-(10**11)) == seconds(EPOCH - timedelta(milliseconds=10**11))


def test_date_hint():
    for raw in (19877, "2024-06-03"):
        assert convert({"v": raw}, columns=typed({"v": "Date"}))["v"] == "2024-06-03"
    assert hint_reader(parse_type("Date"))(-4018) == date(1959, 1, 1)  # read, then refused by the column type


def test_other_types_take_their_canonical_form_of_the_json_value():
    row = {"a": "7", "b": 1.5, "c": True, "e": "x", "f": 5, "g": "2.5", "h": 3.0, "i": "9223372036854775807"}
    types = {"a": "Int64", "b": "Float64", "c": "UInt8", "e": "String", "f": "String", "g": "Float32",
             "h": "Int16", "i": "Int64"}
    result = convert(dict(row), columns=typed(types))
    expected = {"a": 7, "b": 1.5, "c": 1, "e": "x", "f": "5", "g": 2.5, "h": 3, "i": 2**63 - 1}
    assert result == expected
    assert {name: type(value) for name, value in result.items()} == {name: type(v) for name, v in expected.items()}


# --- error paths ----------------------------------------------------------------------------------


def pg_value(mutate) -> bytes:
    value = raw_value(PG, "create")
    mutate(value["payload"])
    return orjson.dumps(value)


def my_source_value(**changes: Any) -> bytes:
    value = raw_value(MY, "create", schemas=False)
    value["source"].update(changes)
    return orjson.dumps(value)


def without(mapping: dict[str, Any], name: str) -> None:
    del mapping[name]


def pg_schema_value(mutate) -> bytes:
    value = raw_value(PG, "create")
    mutate(value["schema"])
    return orjson.dumps(value)


def after_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    after = next(f for f in schema["fields"] if f["field"] == "after")
    return next(f for f in after["fields"] if f["field"] == name)


ERROR_CASES = [
    ("not json", b"{nope", "value: not valid JSON"),
    ("empty bytes", b"", "value: not valid JSON"),
    ("not bytes", 12345, "value: not valid JSON"),
    ("array", b"[1, 2]", "value: expected a JSON object"),
    ("json null", b"null", "value: expected a JSON object"),
    ("payload not object", b'{"schema": {"type": "struct"}, "payload": [1]}', "value: expected an object payload"),
    ("unknown op", pg_value(lambda p: p.update(op="t")), "op:"),
    ("missing op", pg_value(lambda p: without(p, "op")), "op:"),
    ("op not a string", pg_value(lambda p: p.update(op=["c"])), "op:"),
    ("missing source", pg_value(lambda p: without(p, "source")), "source: expected an object"),
    ("source not object", pg_value(lambda p: p.update(source="x")), "source: expected an object"),
    ("missing connector", pg_value(lambda p: without(p["source"], "connector")), "source.connector"),
    ("unknown connector", pg_value(lambda p: p["source"].update(connector="oracle")), "source.connector: unsupported"),
    ("missing name", pg_value(lambda p: without(p["source"], "name")), "source.name"),
    ("missing table", pg_value(lambda p: without(p["source"], "table")), "source.table"),
    ("missing ts_ms", pg_value(lambda p: without(p["source"], "ts_ms")), "source.ts_ms"),
    ("string ts_ms", pg_value(lambda p: p["source"].update(ts_ms="1")), "source.ts_ms"),
    ("missing lsn", pg_value(lambda p: without(p["source"], "lsn")), "source.lsn"),
    ("null lsn", pg_value(lambda p: p["source"].update(lsn=None)), "source.lsn"),
    ("negative lsn", pg_value(lambda p: p["source"].update(lsn=-1)), "source.lsn"),
    ("string lsn", pg_value(lambda p: p["source"].update(lsn="24023184")), "source.lsn"),
    ("bool lsn", pg_value(lambda p: p["source"].update(lsn=True)), "source.lsn"),
    ("lsn too big", pg_value(lambda p: p["source"].update(lsn=2**63)), "source.lsn"),
    ("missing file", my_source_value(file=None), "source.file"),
    ("file without number", my_source_value(file="mariadb-bin"), "source.file"),
    ("file number too big", my_source_value(file="mysql-bin.524288"), "source.file"),
    ("missing pos", my_source_value(pos=None), "source.pos"),
    ("pos too big", my_source_value(pos=2**32), "source.pos"),
    ("row too big", my_source_value(row=4096), "source.row"),
    ("negative row", my_source_value(row=-1), "source.row"),
    ("missing seq", sqlite_value({"id": 1}, seq=None), "source.seq"),
    ("create without after", pg_value(lambda p: p.update(after=None)), "after: required"),
    ("read without after", pg_value(lambda p: p.update(op="r", after=None)), "after: required"),
    ("after not object", pg_value(lambda p: p.update(after=[1])), "after: expected an object"),
    ("before not object", pg_value(lambda p: p.update(before="x")), "before: expected an object"),
    ("bad base64", pg_value(lambda p: p["after"].update(total="!!!")), "after.total"),
    ("bad base64 padding", pg_value(lambda p: p["after"].update(total="AOY")), "after.total"),
    ("empty base64", pg_value(lambda p: p["after"].update(total="")), "after.total"),
    ("decimal as number", pg_value(lambda p: p["after"].update(total=2.3)), "after.total"),
    ("timestamp as string", pg_value(lambda p: p["after"].update(created_at="2024-06-01")), "after.created_at"),
    ("timestamp as float", pg_value(lambda p: p["after"].update(created_at=1.5)), "after.created_at"),
    ("timestamp as bool", pg_value(lambda p: p["after"].update(created_at=True)), "after.created_at"),
    ("timestamp overflow", pg_value(lambda p: p["after"].update(created_at=2**62)), "after.created_at"),
    ("date overflow", pg_value(lambda p: p["after"].update(ship_date=10**9)), "after.ship_date"),
    ("bad zoned timestamp", pg_value(lambda p: p["after"].update(updated_at="yesterday")), "after.updated_at"),
    ("offset and Z", pg_value(lambda p: p["after"].update(updated_at="2024-06-01T12:00:00+02:00Z")), "after.updated_at"),
    ("time past midnight", pg_value(lambda p: p["after"].update(pickup_time=86_400_000_000)), "after.pickup_time"),
    ("negative time", pg_value(lambda p: p["after"].update(pickup_time=-1)), "after.pickup_time"),
    ("variable decimal no scale", pg_value(lambda p: p["after"].update(discount={"value": "AA=="})), "after.discount"),
    ("variable decimal not struct", pg_value(lambda p: p["after"].update(discount="AA==")), "after.discount"),
    ("array not list", pg_value(lambda p: p["after"].update(blackout_dates=5)), "after.blackout_dates"),
    ("array bad item", pg_value(lambda p: p["after"].update(blackout_dates=["x"])), "after.blackout_dates"),
    ("decimal schema no scale", pg_schema_value(lambda s: after_field(s, "total").pop("parameters")), "total"),
    ("decimal schema bad scale", pg_schema_value(lambda s: after_field(s, "total")["parameters"].update(scale="x")),
     "total"),
    ("envelope without after field", pg_schema_value(lambda s: s["fields"].pop(1)), "value.schema: no 'after'"),
    ("field without name", pg_schema_value(lambda s: after_field(s, "total").pop("field")), "value.schema.after.fields"),
    ("array schema without items", pg_schema_value(lambda s: after_field(s, "tags").pop("items")), "tags"),
]


@pytest.mark.parametrize(("value", "where"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_malformed_value_raises_decode_error(value, where):
    with pytest.raises(DecodeError) as info:
        decode(None, value)
    assert where in str(info.value)


def test_schema_fields_not_a_list_in_envelope():
    value = raw_value(PG, "create")
    value["schema"]["fields"] = 5
    with pytest.raises(DecodeError, match=r"value\.schema\.fields"):
        decode(None, orjson.dumps(value))


def test_delete_without_before_or_key():
    with pytest.raises(DecodeError, match="no key message and no before/after"):
        decode(None, pg_value(lambda p: p.update(op="d", after=None, before=None)))


KEY_ERRORS = [
    ("not json", b"{", "key: not valid JSON"),
    ("not object", b"[1]", "key: expected a JSON object"),
    ("payload not object", b'{"schema": {"type": "int32"}, "payload": 5}', "key: expected an object payload"),
    ("bad key schema", b'{"schema": {"type": "struct", "fields": {}}, "payload": {"id": 1}}', "key.schema.fields"),
]


@pytest.mark.parametrize(("key", "where"), [c[1:] for c in KEY_ERRORS], ids=[c[0] for c in KEY_ERRORS])
def test_malformed_key_raises_decode_error(key, where):
    """A key message the decoder needs (the row lacks a key column) must be well formed."""
    with pytest.raises(DecodeError) as info:
        decode(key, message(PG, "create")[1], pk_columns=("key_only",))
    assert where in str(info.value)


def test_missing_pk_column_without_key_message():
    with pytest.raises(DecodeError, match="'order_id' is missing from after"):
        decode(None, sqlite_value({"id": 1}), pk_columns=("order_id",))


HINT_ERRORS = [
    ("Decimal(12, 2)", "not-base64!"),
    ("Decimal(12, 2)", "12345678901.00"),  # 13 digits
    ("Decimal(12, 2)", -(10**10)),  # 10000000000.00: 13 digits
    ("Decimal(4, 2)", 100),
    ("Decimal(38, 38)", "1"),
    ("Decimal(5, 0)", "1e5"),
    ("Decimal(12, 2)", True),
    ("Decimal(12, 2)", [1]),
    ("DateTime", 1.5),
    ("DateTime", True),
    ("DateTime", "not a date"),
    ("DateTime", "2024-06-01T12:00:00+02:00Z"),
    ("DateTime", {"seconds": 1}),
    ("Date", "2024-13-01"),
    ("Date", 1.0),
    ("Date", 10**9),
    ("Int32", "abc"),
    ("Int64", 1.5),
    ("Int64", [1]),
    ("UInt8", "7.5"),
    ("Float64", "abc"),
]


@pytest.mark.parametrize(("type_name", "raw"), HINT_ERRORS)
def test_bad_value_for_column_type_raises_decode_error(type_name, raw):
    column_type = parse_type(type_name)
    with pytest.raises(DecodeError) as info:
        convert({"v": raw}, columns={"v": column_type})
    assert "after.v: cannot read" in str(info.value) and column_type.name in str(info.value)


SCHEMA_VALUE_ERRORS = [
    ("total", "Decimal(5, 2)"),  # 1234.50 has 6 digits
    ("status", "Int64"),
    ("pickup_time", "DateTime"),  # a time of day is not an instant
    ("blackout_dates", "Date"),
    ("customer_id", "Date"),  # the schema says plain int64, not days
]


@pytest.mark.parametrize(("column", "type_name"), SCHEMA_VALUE_ERRORS)
def test_value_read_by_the_schema_that_does_not_fit_its_column_raises(column, type_name):
    columns = {**PG_COLUMNS, column: parse_type(type_name)}
    with pytest.raises(DecodeError) as info:
        decode(*message(PG, "create"), columns=columns)
    assert f"after.{column}: cannot read" in str(info.value) and columns[column].name in str(info.value)


# Type strings the decoder used to parse itself: the one parser refuses them before any decoding.
REFUSED_TYPES = [
    "Decimal(x)",
    "Decimal(80,2)",
    "Decimal(2,3)",
    "Decimal(0, 0)",
    "Decimal(5)",
    "DateTime64(",
    "DateTime64(6)",
    "DateTime64(6, 'UTC')",
    "DateTime('UTC')",
    "Nullable(Int64)",
    "Nullable(Decimal(12, 2))",
    "LowCardinality(String)",
    "Decimal32(2)",
    "Decimal64(2)",
    "Decimal256(40)",
    "Date32",
    "Array(Date)",
]


@pytest.mark.parametrize("type_name", REFUSED_TYPES)
def test_type_strings_outside_the_spec_are_refused_by_parse_type(type_name):
    with pytest.raises(TypeSpecError):
        parse_type(type_name)


def test_type_strings_are_no_longer_decode_arguments():
    with pytest.raises(TypeError):
        decode(KEY, sqlite_value({"id": 1}), column_types={"id": "Int64"})


# --- properties ---------------------------------------------------------------------------------

# Mirrors cdcapp.debezium.connect: what the schemaless Decimal hint reads as a number, not base64.
DECIMAL_LITERAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@settings(max_examples=150, deadline=None)
@given(data=st.data(), precision=st.integers(1, 76), pad=st.booleans())
def test_decimal_base64_round_trip(data, precision, pad):
    scale = data.draw(st.integers(0, precision), label="scale")
    unscaled = data.draw(st.integers(-(10**precision) + 1, 10**precision - 1), label="unscaled")
    expected = Decimal(f"{unscaled}E-{scale}")
    encoded = java_decimal_b64(unscaled, pad)
    fields = [
        field("fixed", "bytes", DECIMAL, parameters={"scale": str(scale), "connect.decimal.precision": str(precision)}),
        field("variable", "struct", "io.debezium.data.VariableScaleDecimal"),
    ]
    row = convert({"fixed": encoded, "variable": {"scale": scale, "value": encoded}}, fields)
    for result in row.values():
        assert result == expected and result.as_tuple() == expected.as_tuple()
    if precision > 38:
        return  # wider than any spec Decimal: only the schema path above applies
    column = parse_type(f"Decimal({precision}, {scale})")
    raw = {"text": str(expected), "plain": format(expected, "f")}
    if not DECIMAL_LITERAL.fullmatch(encoded):
        raw["b64"] = encoded  # else the hint reads it as a number, as documented
    results = [
        *convert(raw, columns=dict.fromkeys(raw, column)).values(),
        *convert({"fixed": encoded, "variable": {"scale": scale, "value": encoded}}, fields,
                 columns=dict.fromkeys(("fixed", "variable"), column)).values(),
    ]
    for result in results:
        assert type(result) is str and Decimal(result).as_tuple() == expected.as_tuple()
        if expected.adjusted() >= -6:  # below that see test_canonical_decimal_is_written_plain
            assert result == format(expected, "f")
    # One digit more than the column's precision does not fit, however it is encoded.
    too_big = data.draw(st.sampled_from([10**precision, -(10**precision)]), label="too_big")
    too_big_b64 = java_decimal_b64(too_big, pad)
    bare = [str(Decimal(f"{too_big}E-{scale}"))]
    if not DECIMAL_LITERAL.fullmatch(too_big_b64):
        bare.append(too_big_b64)
    for raw, fields_v in [*((raw, None) for raw in bare), (too_big_b64, [dict(fields[0], field="v")])]:
        with pytest.raises(DecodeError, match=re.escape(f"after.v: cannot read {raw!r} as {column.name}")):
            convert({"v": raw}, fields_v, columns={"v": column})


@pytest.mark.parametrize(
    ("raw", "type_name", "expected"),
    [
        ("0.0000001", "Decimal(10, 7)", "0.0000001"),
        ("0", "Decimal(10, 7)", "0.0000000"),
        ("/w==", "Decimal(12, 7)", "-0.0000001"),
        ("-0.00", "Decimal(12, 2)", "0.00"),
    ],
)
def test_canonical_decimal_is_written_plain(raw, type_name, expected):
    # The canonical Decimal is a string with exactly S decimals; "1E-7" or "-0.00" is a second
    # spelling of a value, which string comparisons downstream would treat as different.
    assert convert({"v": raw}, columns=typed({"v": type_name}))["v"] == expected


# Epoch nanoseconds in an int64 cover 1677-09-21 .. 2262-04-11.
NANO_RANGE = {"min_value": datetime(1677, 9, 22), "max_value": datetime(2262, 4, 10)}


@settings(max_examples=150, deadline=None)
@given(
    moment=st.datetimes(**NANO_RANGE),
    sub_micro=st.integers(0, 999),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
    day=st.dates(),
)
def test_temporal_round_trip_with_schema(moment, sub_micro, offset_minutes, day):
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    millis_moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    offset = timezone(timedelta(minutes=offset_minutes))
    fields = [
        field("ms", "int64", "io.debezium.time.Timestamp"),
        field("us", "int64", "io.debezium.time.MicroTimestamp"),
        field("ns", "int64", "io.debezium.time.NanoTimestamp"),
        field("zoned", "string", "io.debezium.time.ZonedTimestamp"),
        field("day", "int32", "io.debezium.time.Date"),
    ]
    encoded = {
        "ms": (millis_moment - EPOCH) // timedelta(milliseconds=1),
        "us": micros,
        "ns": micros * 1000 + sub_micro,
        "zoned": moment.replace(tzinfo=timezone.utc).astimezone(offset).isoformat(),
        "day": (day - EPOCH.date()).days,
    }
    row = convert(encoded, fields)
    assert row == {"ms": millis_moment, "us": moment, "ns": moment, "zoned": moment, "day": day}
    instants = ("ms", "us", "ns", "zoned")
    columns = {**dict.fromkeys(instants, parse_type("DateTime")), "day": parse_type("Date")}
    holdable = EPOCH <= moment < datetime(2106, 1, 1) and EPOCH.date() <= day < date(2106, 1, 1)
    if holdable:
        canonical = convert(encoded, fields, columns=columns)
        assert canonical == {**dict.fromkeys(instants, seconds(moment)), "day": day.isoformat()}
    else:
        with pytest.raises(DecodeError, match="outside 1970-01-01"):
            convert(encoded, fields, columns=columns)


@settings(max_examples=150, deadline=None)
@given(
    moment=st.one_of(
        st.datetimes(min_value=datetime(1973, 3, 4), max_value=NANO_RANGE["max_value"]),
        st.datetimes(min_value=NANO_RANGE["min_value"], max_value=datetime(1966, 10, 30)),
    )
)
def test_datetime_hint_picks_the_unit_by_magnitude(moment):
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    encodings = {"s": micros // 10**6, "ms": micros // 1000, "us": micros, "ns": micros * 1000}
    # The hint reads each unit exactly...
    read = hint_reader(parse_type("DateTime"))
    assert {unit: read(raw) for unit, raw in encodings.items()} == {
        "s": moment.replace(microsecond=0),
        "ms": moment.replace(microsecond=moment.microsecond // 1000 * 1000),
        "us": moment,
        "ns": moment,
    }
    # ...and the decoded canonical value is that instant to the second, where a DateTime holds it.
    columns = dict.fromkeys(encodings, parse_type("DateTime"))
    if EPOCH <= moment < datetime(2106, 1, 1):
        assert convert(encodings, columns=columns) == dict.fromkeys(encodings, seconds(moment))
    else:
        with pytest.raises(DecodeError, match="outside 1970-01-01"):
            convert(encodings, columns=columns)


def test_an_incremental_snapshot_row_takes_the_lsn_its_window_closed_at():
    value = orjson.dumps({"op": "r", "before": None, "after": {"id": 1}, "source": {
        "connector": "postgresql", "name": "postgres", "table": "customers", "ts_ms": 1, "snapshot": "incremental",
        "lsn": None, "sequence": '["2581803352","2581803360"]'}})
    change = decode(b'{"id":1}', value)
    assert (change.position, change.snapshot) == (2581803360, True)
    with pytest.raises(DecodeError, match="source.sequence"):
        decode(b'{"id":1}', value.replace(b"2581803360", b"x"))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), precision=st.integers(1, 38))
def test_a_value_kept_as_it_is_is_one_its_type_would_not_change(data, precision):
    """The decoder skips ``canonical`` for schemaless values ``already_canonical`` accepts: it must
    accept only values that ``canonical`` returns unchanged."""
    scale = data.draw(st.integers(0, precision))
    types = [parse_type(f"Decimal({precision}, {scale})"), parse_type("Int8"), parse_type("UInt32"),
             parse_type("Int64"), parse_type("String"), parse_type("Float64"), parse_type("DateTime")]
    column_type = data.draw(st.sampled_from(types))
    value = data.draw(st.one_of(
        st.integers(-(1 << 65), 1 << 65), st.text(), st.floats(allow_nan=False), st.booleans(),
        st.decimals(allow_nan=False, allow_infinity=False).map(str),
        st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{0,12})?", fullmatch=True)))
    as_is = column_type.already_canonical()
    if as_is is not None and as_is(value):
        assert column_type.canonical(value) == value and type(column_type.canonical(value)) is type(value)


def test_most_schemaless_values_skip_the_conversion_and_keep_their_value():
    columns = {"id": parse_type("Int64"), "name": parse_type("String"), "price": parse_type("Decimal(10, 2)")}
    value = orjson.dumps({"op": "c", "before": None, "after": {"id": 7, "name": "Lamp", "price": "18.50"},
                          "source": {"connector": "postgresql", "name": "pg", "table": "products", "ts_ms": 1,
                                     "lsn": 5}})
    change = decode(None, value, columns=columns)
    assert change.after == {"id": 7, "name": "Lamp", "price": "18.50"}
    for after, expected in (({"id": 7, "name": "Lämp", "price": "18.5"}, {"id": 7, "name": "Lämp", "price": "18.50"}),
                            ({"id": True, "name": "x", "price": "-0.00"}, {"id": 1, "name": "x", "price": "0.00"})):
        value = orjson.dumps({"op": "c", "before": None, "after": after, "source": {
            "connector": "postgresql", "name": "pg", "table": "products", "ts_ms": 1, "lsn": 5}})
        assert decode(None, value, columns=columns).after == expected
