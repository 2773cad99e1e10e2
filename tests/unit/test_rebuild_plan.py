"""The names a rebuild chooses, the one RENAME that swaps, and how a worker joins a generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdcapp.clickhouse.client import pipeline_database
from cdcapp.clickhouse.generation import LIVE, SWAPPING, Generation, applied, spec_hash
from cdcapp.config import Settings
from cdcapp.model.spec import DEFAULT_SPEC, load_spec
from cdcapp.tools.rebuild import RebuildFailed, Source, plan, swap_statement

SERVER = "clickhouse://default:s%40cret@127.0.0.1:19000/olap_db"


def settings(**update) -> Settings:
    return Settings(_env_file=None).model_copy(update={"clickhouse_url": SERVER, **update})


def test_the_new_generation_has_a_namespace_and_a_database_of_its_own() -> None:
    spec = load_spec()
    p = plan(settings(), spec, None, "20261127t050000")
    assert (p.shadow.app_id, p.shadow.internal_topic_prefix) == ("cdcapp-r20261127t050000", "cdcapp-r20261127t050000")
    assert (p.live_db, p.shadow_db, p.old_db) == ("olap_db", "olap_db__r20261127t050000",
                                                  "olap_db__old_r20261127t050000")
    # Same server and credentials, the rebuild's database.
    assert p.shadow.clickhouse_url == "clickhouse://default:s%40cret@127.0.0.1:19000/olap_db__r20261127t050000"
    assert p.generation == Generation("cdcapp-r20261127t050000", "cdcapp-r20261127t050000", spec_hash(spec), SWAPPING)
    assert p.live.app_id == "cdcapp"


def test_a_second_rebuild_replaces_the_generation_a_first_one_made_live() -> None:
    first = Generation("cdcapp-r1", "cdcapp-r1", "abc", LIVE)
    p = plan(settings(), load_spec(), first, "2")
    assert p.live.app_id == "cdcapp-r1" and p.shadow.app_id == "cdcapp-r2"


def test_chdb_cannot_be_rebuilt() -> None:
    with pytest.raises(RebuildFailed, match="needs a ClickHouse server"):
        plan(settings(clickhouse_url="chdb:///tmp/x"), load_spec(), None, "1")


def test_one_rename_moves_the_live_tables_out_and_the_rebuilt_ones_in() -> None:
    p = plan(settings(), load_spec(), None, "1")
    sql = swap_statement(p, ["dim_customer", "fact_order"], {"dim_customer"})
    assert sql == ("RENAME TABLE `olap_db`.`dim_customer` TO `olap_db__old_r1`.`dim_customer`, "
                   "`olap_db__r1`.`dim_customer` TO `olap_db`.`dim_customer`, "
                   "`olap_db__r1`.`fact_order` TO `olap_db`.`fact_order`")


def test_a_worker_takes_the_live_generations_namespace() -> None:
    base = settings(worker_dir=Path("/w"), app_id="shop", clickhouse_url="clickhouse://default@127.0.0.1:19000")
    assert applied(base, load_spec(), None) is base
    joined = applied(base, load_spec(), Generation("shop-r1", "shop-r1", "abc", LIVE))
    assert (joined.app_id, joined.internal_topic_prefix, joined.worker_dir) == ("shop-r1", "shop-r1",
                                                                                Path("/w/shop-r1"))
    # The database stays the one handed over, though by default it follows the app id.
    assert pipeline_database(joined, load_spec()) == pipeline_database(base, load_spec()) == "shop"


def test_the_spec_hash_follows_the_spec(tmp_path: Path) -> None:
    spec = load_spec()
    changed = tmp_path / "spec.yaml"
    changed.write_text(DEFAULT_SPEC.read_text().replace("      product_name: product.name\n", ""))
    assert spec_hash(load_spec(DEFAULT_SPEC)) == spec_hash(spec) != spec_hash(load_spec(changed))


@pytest.mark.parametrize(("text", "db", "expected"), [
    ("postgres", None, Source("postgres", "postgres")),
    ("sqlite=shop-1", Path("/x.db"), Source("sqlite", "shop-1", Path("/x.db"))),
])
def test_sources_are_named_kind_and_source_id(text: str, db: Path | None, expected: Source) -> None:
    assert Source.parse(text, db) == expected


@pytest.mark.parametrize(("text", "db", "error"), [("oracle", None, "must be one of"),
                                                   ("sqlite", None, "--db is required")])
def test_a_bad_source_says_why(text: str, db: Path | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Source.parse(text, db)
