"""Pure parts around the join: the spec, column types, DDL, the flush policy, the OLTP SQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from cdcapp.model.types import TypeSpecError, ValueTypeError, parse_type
from cdcapp.clickhouse.client import ClickHouseUrl
from cdcapp.sink.policy import FlushPolicy
from cdcapp.clickhouse.ddl import ddl, table_shapes
from cdcapp.model.spec import DEFAULT_SPEC, Spec, compile_measure, load_spec
from cdcapp.tools.verify import Report, compare, dimension_sql, fact_sql, in_flight_only

SPEC = load_spec()


def spec_with(mutate) -> dict:
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    mutate(raw)
    return raw


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["entities"]["orders"]["refs"]["customer"].update(entity="nope"), "unknown entity"),
    (lambda s: s["entities"]["orders"]["columns"].update(total="LowCardinality(String)"), "unsupported column type"),
    (lambda s: s["entities"]["customers"].update(refs={"o": {"entity": "orders", "columns": ["id"]}}), "cycle"),
    (lambda s: s["facts"][0]["columns"].update(x="order.customer.nope"), "no column"),
    (lambda s: s["facts"][0]["measures"].update(m={"expr": "quantity / 2", "type": "Int64"}), r"only \+ - \*"),
    (lambda s: s["entities"]["customers"].update(key=["uid"]), "key columns"),
])
def test_bad_specs_are_refused_with_a_reason(mutate, message) -> None:
    with pytest.raises(ValueError, match=message):
        Spec.model_validate(spec_with(mutate))


def test_measures_are_exact_decimals() -> None:
    revenue = compile_measure("quantity * unit_price - 0.1", {"quantity", "unit_price"})
    assert revenue({"quantity": 3, "unit_price": "0.10"}) == Decimal("0.20")


def test_a_measure_is_rounded_to_its_type_where_a_source_value_would_be_refused() -> None:
    vat = compile_measure("unit_price * 0.075", {"unit_price"})
    money = parse_type("Decimal(18, 2)")
    assert money.computed(vat({"unit_price": "9.99"})) == "0.75"  # 0.74925, half-even
    with pytest.raises(ValueTypeError, match="more than 2 decimal places"):
        money.canonical(Decimal("0.74925"))
    assert money.computed(496.16999999999996) == "496.17"  # SQLite's REAL arithmetic, in the ground truth


@pytest.mark.parametrize("type_name, value, canonical", [
    ("Int64", "42", 42),
    ("Decimal(12, 2)", Decimal("1.5"), "1.50"),
    ("Decimal(12,2)", 2.67, "2.67"),
    ("DateTime", datetime(2024, 1, 1, 12, 0, 0, 999), "2024-01-01 12:00:00"),
    ("DateTime", datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), "2024-01-01 10:00:00"),
    ("DateTime", "2024-01-01T00:00:00Z", "2024-01-01 00:00:00"),
    ("Date", date(2024, 2, 29), "2024-02-29"),
    ("String", 5, "5"),
])
def test_values_have_one_canonical_spelling(type_name, value, canonical) -> None:
    assert parse_type(type_name).canonical(value) == canonical


def test_bad_values_and_types_are_reported() -> None:
    with pytest.raises(ValueTypeError):
        parse_type("Int32").canonical("abc")
    with pytest.raises(ValueTypeError):
        parse_type("Decimal(5, 1)").canonical("NaN")
    with pytest.raises(TypeSpecError):
        parse_type("DateTime64(3)")


def test_ddl_uses_replacing_merge_tree_keyed_by_source_and_key_and_current_views() -> None:
    statements = ddl(SPEC, "olap_db")
    fact = next(s for s in statements if "TABLE IF NOT EXISTS `olap_db`.`fact_order` " in s)
    assert "ReplacingMergeTree(_version) ORDER BY (`_source`, `id`)" in fact
    assert "`revenue` Decimal(18, 2)" in fact and "`customer_country` String" in fact
    assert ("CREATE VIEW IF NOT EXISTS `olap_db`.`fact_order_current` AS SELECT * FROM `olap_db`.`fact_order` "
            "FINAL WHERE _is_deleted = 0") in statements
    assert all("LowCardinality" not in s and "DateTime64" not in s for s in statements)


def test_flush_policy_by_size_and_by_age() -> None:
    policy = FlushPolicy(max_rows=3, max_age_s=0.5)
    assert not policy.due(now=100.0) and policy.seconds_until_due(now=100.0) is None
    policy.added(2, now=100.0)
    assert not policy.due(now=100.4)
    assert policy.seconds_until_due(now=100.1) == pytest.approx(0.4), "the oldest row's age decides"
    policy.added(0, now=100.3)
    assert policy.seconds_until_due(now=100.3) == pytest.approx(0.2)
    assert policy.due(now=100.5) and policy.seconds_until_due(now=100.6) == 0.0
    policy.flushed()
    policy.added(3, now=200.0)
    assert policy.due(now=200.0) and policy.seconds_until_due(now=200.0) == 0.0


@pytest.mark.parametrize("url, expected", [
    ("clickhouse://u:p%40ss@h:9001/db", ClickHouseUrl("clickhouse", "h", 9001, "u", "p@ss", "db")),
    ("clickhouse://h", ClickHouseUrl("clickhouse", "h", 9000, "default", "", "")),
    ("chdb:///var/x", ClickHouseUrl("chdb", path="/var/x")),
])
def test_clickhouse_urls(url, expected) -> None:
    assert ClickHouseUrl.parse(url) == expected
    assert "p@ss" not in ClickHouseUrl.parse(url).redacted()


def test_unknown_clickhouse_url_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported ClickHouse URL"):
        ClickHouseUrl.parse("http://h:8123")


def test_oltp_fact_sql_joins_along_the_ref_paths() -> None:
    sql = fact_sql(SPEC, 0, "postgres")
    assert 'FROM "order_items" t0' in sql
    assert 'JOIN "orders" t1 ON t1."id" = t0."order_id"' in sql
    assert 'JOIN "customers" t2 ON t2."id" = t1."customer_id"' in sql
    assert 'JOIN "products" t3 ON t3."id" = t0."product_id"' in sql
    assert '(t0."quantity") * (t0."price")' in sql
    assert "`orders`" in fact_sql(SPEC, 0, "mariadb")


def test_compare_reports_missing_unexpected_different_and_duplicate_rows() -> None:
    shape = table_shapes(SPEC)["dim_product"]
    row = lambda i, name: (i, name, "c", "1.00", "2024-01-01 00:00:00")  # noqa: E731
    diff = compare(shape, [row(1, "a"), row(2, "b"), row(3, "c")],
                   [row(2, "b"), row(3, "X"), row(4, "d"), row(4, "d")])
    assert diff.missing == [row(1, "a")]
    assert diff.different == [(row(3, "c"), row(3, "X"))]
    assert row(4, "d") in diff.unexpected and len(diff.unexpected) == 2
    assert not diff.equal


def test_a_live_verify_accepts_differences_only_once_none_persists_between_attempts() -> None:
    shape = table_shapes(SPEC)["dim_product"]
    row = lambda i, name: (i, name, "c", "1.00", "2024-01-01 00:00:00")  # noqa: E731
    source = [row(1, "a"), row(2, "b"), row(3, "c")]

    def attempt(actual: list) -> Report:
        return Report("s", [compare(shape, source, actual)])

    first = attempt([row(1, "a"), row(2, "old")])  # 2 in flight, 3 not there yet
    assert first.differences == {("dim_product", (2,)), ("dim_product", (3,))}
    assert not in_flight_only(None, first)
    # Row 3 still missing: it may be lagging or lost, so not yet.
    assert not in_flight_only(first, attempt([row(1, "a"), row(2, "b")]))
    # Other rows changing meanwhile, none of the earlier ones: only changes in flight.
    assert in_flight_only(first, attempt([row(1, "new"), row(2, "b"), row(3, "c")]))
    assert not in_flight_only(first, attempt(source))  # equal is equal, not in flight


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    from cdcapp.model.spec import DEFAULT_SPEC

    text = DEFAULT_SPEC.read_text()
    assert old in text
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(("old", "new", "said"), [
    ("customer_city: order.customer.city", "customer_city: order.customer.town",
     "fact fact_order: column customer_city: path 'order.customer.town': customers has no column 'town'"),
    ("revenue: {expr: \"quantity * unit_price\"", "revenue: {expr: \"quantity * discount\"",
     "fact fact_order: measure revenue: "),
    ("facts:", "facts: [\n", "line "),
])
def test_a_spec_mistake_is_one_line_naming_the_file_and_the_place(tmp_path: Path, old: str, new: str,
                                                                 said: str) -> None:
    from cdcapp.model.spec import SpecError, load_spec

    path = _broken(tmp_path, old, new)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and said in line and "\n" not in line


def test_spec_check_prints_the_model_and_exits_2_on_a_mistake(tmp_path: Path) -> None:
    import subprocess
    import sys

    good = subprocess.run([sys.executable, "-m", "cdcapp.cli", "spec", "check"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "customer_country String = order_items -order-> orders -customer-> customers.country" in good.stdout
    assert "CREATE TABLE IF NOT EXISTS" in good.stdout
    path = _broken(tmp_path, "customer_city: order.customer.city", "customer_city: order.customer.town")
    bad = subprocess.run([sys.executable, "-m", "cdcapp.cli", "spec", "check", str(path)], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "column customer_city" in bad.stderr


def test_verify_reads_schema_qualified_source_tables() -> None:
    from cdcapp.model.spec import Spec

    blog = Spec.model_validate({
        "entities": {
            "authors": {"source": "blog.authors", "columns": {"id": "Int64", "name": "String"}},
            "posts": {"source": "blog.posts", "columns": {"id": "Int64", "author_id": "Int64"},
                      "refs": {"author": {"entity": "authors", "columns": ["author_id"]}}},
        },
        "dimensions": [{"table": "dim_author", "entity": "authors"}],
        "facts": [{"table": "fact_post", "entity": "posts", "columns": {"id": "id", "author": "author.name"}}],
    })
    assert dimension_sql(blog, "authors", "postgres") == 'SELECT "id", "name" FROM "blog"."authors"'
    sql = fact_sql(blog, 0, "mariadb")
    assert "FROM `blog`.`posts` t0" in sql and "JOIN `blog`.`authors` t1 ON" in sql
    assert dimension_sql(SPEC, "customers", "postgres").endswith('FROM "customers"')
    with pytest.raises(ValueError):
        Spec.model_validate({"entities": {"a": {"source": 'x."; DROP', "columns": {"id": "Int64"}}}})
