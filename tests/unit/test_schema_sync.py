"""Schema sync's pure parts: source types, widening, identifiers, missing and added columns."""

from __future__ import annotations

import orjson
import pytest

from cdcapp.clickhouse.ddl import BadIdentifier, add_column, quote, replace_current_view, table_shapes
from cdcapp.debezium.shape import ChangeShaper
from cdcapp.model.messages import SinkRow
from cdcapp.model.sourcetypes import SourceColumn, to_clickhouse, widens
from cdcapp.model.spec import load_spec
from cdcapp.model.types import parse_type
from cdcapp.sink.buffer import SinkBuffer, UnknownColumns

SPEC = load_spec()


@pytest.mark.parametrize(("dialect", "column", "expected"), [
    ("postgresql", SourceColumn("c", "integer"), "Int32"),
    ("postgresql", SourceColumn("c", "bigint"), "Int64"),
    ("postgresql", SourceColumn("c", "numeric", 8, 3), "Decimal(8, 3)"),
    ("postgresql", SourceColumn("c", "numeric"), "String"),  # unbounded: exact only as text
    ("postgresql", SourceColumn("c", "timestamp with time zone"), "DateTime"),
    ("postgresql", SourceColumn("c", "jsonb"), "String"),
    ("mariadb", SourceColumn("c", "int", unsigned=True), "UInt32"),
    ("mariadb", SourceColumn("c", "decimal", 10, 2), "Decimal(10, 2)"),
    ("mariadb", SourceColumn("c", "varchar"), "String"),
    ("sqlite", SourceColumn("c", "DECIMAL(8, 3)"), "Decimal(8, 3)"),
    ("sqlite", SourceColumn("c", "DECIMAL", 8, 3), "Decimal(8, 3)"),
    ("sqlite", SourceColumn("c", "BIGINT"), "Int64"),
    ("sqlite", SourceColumn("c", ""), "String"),
])
def test_source_types_map_to_types_both_engines_store(dialect, column, expected) -> None:
    assert to_clickhouse(dialect, column).name == expected


@pytest.mark.parametrize(("old", "new", "safe"), [
    ("Int32", "Int64", True),
    ("Int64", "Int32", False),
    ("UInt32", "Int64", True),
    ("Int32", "UInt64", False),
    ("Decimal(8, 3)", "Decimal(10, 4)", True),
    ("Decimal(8, 3)", "Decimal(8, 4)", False),  # one integer digit fewer
    ("Int32", "Decimal(12, 2)", True),
    ("Int32", "Decimal(10, 2)", False),
    ("Float32", "Float64", True),
    ("Int32", "String", False),
    ("String", "Int64", False),
])
def test_widening_only_when_every_old_value_fits(old, new, safe) -> None:
    assert widens(parse_type(old), parse_type(new)) is safe


def test_hostile_names_are_quoted_into_one_identifier() -> None:
    hostile = "x`; DROP TABLE fact_order; --"
    statement = add_column("olap_db", "dim_customer", hostile, parse_type("String"))
    assert statement == "ALTER TABLE `olap_db`.`dim_customer` ADD COLUMN `x\\`; DROP TABLE fact_order; --` String"
    assert quote("a\\b") == "`a\\\\b`"
    for bad in ("", "a\nb", "nul\x00", "x" * 201):
        with pytest.raises(BadIdentifier):
            quote(bad)


def test_view_is_rebuilt_beside_the_old_one_and_swapped_in() -> None:
    create, rename, drop = replace_current_view("olap_db", table_shapes(SPEC)["dim_customer"], "ab12")
    assert create.startswith("CREATE VIEW `olap_db`.`dim_customer_current.new.ab12` AS SELECT * FROM")
    assert rename == ("RENAME TABLE `olap_db`.`dim_customer_current` TO `olap_db`.`dim_customer_current.old.ab12`, "
                      "`olap_db`.`dim_customer_current.new.ab12` TO `olap_db`.`dim_customer_current`")
    assert drop == "DROP TABLE `olap_db`.`dim_customer_current.old.ab12`"


def _event(after: dict) -> bytes:
    return orjson.dumps({"op": "u", "before": None, "after": after, "source": {
        "connector": "postgresql", "name": "postgres", "table": "customers", "lsn": 7, "ts_ms": 1}})


CUSTOMER = {"id": 1, "email": "a@x", "name": "Ann", "country": "DE", "city": "Berlin",
            "created_at": "2024-01-02T03:04:05Z"}


def test_a_spec_column_gone_from_the_source_gets_its_default_and_is_counted() -> None:
    shaper = ChangeShaper(SPEC, "customers")
    counted: list[tuple[str, str]] = []

    class Counter:
        def inc(self) -> None:
            counted.append(("customers", "city"))

    shaper.on_missing = lambda entity, column: Counter()
    renamed = {**{k: v for k, v in CUSTOMER.items() if k != "city"}, "city_old": "Berlin"}
    message = shaper.shape(shaper.decode(b'{"id":1}', _event(renamed)))
    assert message["row"]["city"] == "" and message["row"]["city_old"] == "Berlin"
    assert counted == [("customers", "city")] and shaper.missing == {"city"}


def test_mirrored_entities_report_columns_they_do_not_know_until_learned() -> None:
    shaper = ChangeShaper(SPEC, "customers")
    change = shaper.decode(b'{"id":1}', _event({**CUSTOMER, "loyalty_tier": "gold", "bad\n": 1}))
    assert shaper.unknown_columns(change) == ["loyalty_tier", "bad\n"]
    shaper.learned({"loyalty_tier": parse_type("String")}, frozenset({"bad\n"}))
    change = shaper.decode(b'{"id":1}', _event({**CUSTOMER, "loyalty_tier": "gold", "bad\n": 1}))
    assert shaper.unknown_columns(change) == []
    assert "bad\n" not in shaper.shape(change)["row"]  # left out, not passed on
    # order_items has no mirrored dimension: its extra columns never need a table change.
    items = ChangeShaper(SPEC, "order_items")
    assert not items.mirrored


def test_sink_fills_added_columns_and_asks_for_columns_it_lacks() -> None:
    shapes = table_shapes(SPEC)
    base = shapes["dim_customer"]
    buffer: SinkBuffer[int] = SinkBuffer(shapes)
    row = {**{c: "" for c in base.data_columns}, "id": 1, "created_at": "2024-01-02 03:04:05",
           "_source": "postgres", "_version": 1, "_is_deleted": 0}
    with pytest.raises(UnknownColumns) as info:
        buffer.add([SinkRow("dim_customer", "postgres|1", {**row, "loyalty_tier": "gold"}, 0)], 1)
    assert info.value.columns == ["loyalty_tier"]
    # What SchemaSync.refresh puts in place once ClickHouse has the column:
    shapes["dim_customer"] = type(base)(base.name, {**base.columns, "loyalty_tier": parse_type("String")},
                                        base.key, True, frozenset({"loyalty_tier"}))
    buffer.add([SinkRow("dim_customer", "postgres|1", {**row, "loyalty_tier": "gold"}, 0)], 1)
    buffer.add([SinkRow("dim_customer", "postgres|2", {**row, "id": 2}, 0)], 2)  # from before the column
    (_, rows), = buffer.take().tables
    assert [r["loyalty_tier"] for r in rows] == ["gold", ""]
