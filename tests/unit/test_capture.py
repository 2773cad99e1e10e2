"""What the connectors capture, derived from the spec and merged into what they capture already."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdcapp.config import Settings
from cdcapp.model.spec import load_spec
from cdcapp.sources.capture import captured, resolve_tables
from cdcapp.stack.connectors import (Endpoints, capture_config, connector_spec, deployed_tables, plan_capture,
                                     routed_topic)

SETTINGS = Settings(_env_file=None)
BLOG = load_spec(Path(__file__).parents[2] / "examples" / "blog" / "spec.yaml")
SHOP = load_spec()
#: what the connector files said before the spec drove capture: every table to <prefix>.<table>
OLD_ROUTE = {"transforms": "route", "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
             "transforms.route.regex": r"([^.]+)\.([^.]+)\.([^.]+)", "transforms.route.replacement": "oltp.$3"}


def deployed_config(kind: str, tables: dict[str, str]) -> dict[str, str]:
    template = connector_spec(kind, SETTINGS, Endpoints.native(SETTINGS))["config"]
    return {**template, **capture_config(kind, SETTINGS, template["topic.prefix"], tables)}


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_each_table_goes_to_its_entity_topic(kind: str) -> None:
    config = deployed_config(kind, {**captured(SHOP, kind, SETTINGS), **captured(BLOG, kind, SETTINGS)})
    default = "public" if kind == "postgres" else SETTINGS.mariadb_db
    assert set(config["table.include.list"].split(",")) == {
        *(f"{default}.{t}" for t in ("customers", "products", "orders", "order_items", "debezium_signal")),
        "blog.authors", "blog.posts", "blog.comments"}
    route = lambda table: routed_topic(config, f"{kind}.{table}")  # noqa: E731
    assert route(f"{default}.customers") == "oltp.customers"
    assert route("blog.authors") == "oltp.authors"
    assert route(f"{default}.debezium_signal") == "oltp.debezium_signal"
    # A table included by hand, without a route: schema and table, never another table's topic.
    assert route(f"{default}.authors") == f"oltp.{default}.authors"
    assert route("blog.customers") == "oltp.blog.customers"
    if kind == "mariadb":
        assert config["database.include.list"] == ",".join(sorted({"blog", SETTINGS.mariadb_db}))


def test_same_table_name_in_two_schemas_gets_two_topics() -> None:
    spec = BLOG.model_copy(update={"entities": {
        **BLOG.entities, "shop_authors": BLOG.entities["authors"].model_copy(update={"source": "authors"})}})
    tables = captured(spec, "postgres", SETTINGS)
    assert tables["blog.authors"] == "oltp.authors" and tables["public.authors"] == "oltp.shop_authors"
    config = deployed_config("postgres", tables)
    assert routed_topic(config, "postgres.public.authors") != routed_topic(config, "postgres.blog.authors")


def test_the_old_fixed_config_reads_back_as_the_same_topics() -> None:
    old = {**connector_spec("postgres", SETTINGS, Endpoints.native(SETTINGS))["config"], **OLD_ROUTE,
           "table.include.list": "public.customers,public.products,public.orders,public.order_items,"
                                 "public.debezium_signal,public.audit"}
    deployed = deployed_tables("postgres", SETTINGS, old)
    assert deployed == {**captured(SHOP, "postgres", SETTINGS), "public.audit": "oltp.audit"}
    plan = plan_capture(captured(SHOP, "postgres", SETTINGS), deployed, prune=False)
    # Redeploying moves no topic and keeps the table added by hand, saying so.
    assert plan.tables == deployed and not plan.added and not plan.moved and plan.kept == ["public.audit"]
    assert plan.describe() == ["keeps capturing public.audit -> oltp.audit (no spec names it; --prune drops it)"]
    new = deployed_config("postgres", plan.tables)
    assert deployed_tables("postgres", SETTINGS, new) == deployed


def test_adding_a_spec_adds_its_tables_and_prune_drops_what_no_spec_names() -> None:
    shop = captured(SHOP, "postgres", SETTINGS)
    plan = plan_capture({**shop, **captured(BLOG, "postgres", SETTINGS)}, shop, prune=False)
    assert plan.added == ["blog.authors", "blog.comments", "blog.posts"] and not plan.kept
    assert "captures blog.authors -> oltp.authors (new: snapshotted incrementally)" in plan.describe()
    # The blog's pipeline deployed alone later: the shop's tables stay unless pruned.
    blog_only = plan_capture(captured(BLOG, "postgres", SETTINGS), plan.tables, prune=False)
    assert blog_only.tables == plan.tables and blog_only.kept == sorted(shop)
    pruned = plan_capture(captured(BLOG, "postgres", SETTINGS), plan.tables, prune=True)
    assert set(pruned.tables) == {"blog.authors", "blog.comments", "blog.posts"} and pruned.pruned == sorted(shop)
    moved = plan_capture({**shop, "public.orders": "oltp.orders_v2"}, shop, prune=False)
    assert moved.moved == [("public.orders", "oltp.orders", "oltp.orders_v2")]


def test_operators_name_tables_by_entity_or_table() -> None:
    assert resolve_tables(BLOG, "postgres", SETTINGS, ["authors", "blog.posts", "comments"]) == [
        "blog.authors", "blog.posts", "blog.comments"]
    assert resolve_tables(BLOG, "sqlite", SETTINGS, ["authors"]) == ["authors"]
    assert resolve_tables(SHOP, "mariadb", SETTINGS, ["orders"]) == [f"{SETTINGS.mariadb_db}.orders"]
    with pytest.raises(LookupError, match="'users' is no entity or table of the spec"):
        resolve_tables(BLOG, "postgres", SETTINGS, ["users"])
