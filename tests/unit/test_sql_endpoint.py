"""The web's /sql/ endpoint: one read-only statement over the pipeline's database, behind a token
off loopback. The checks run pure and against a real embedded chdb."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cdcapp.clickhouse.client import ClickHouse
from cdcapp.clickhouse.readonly import Refused, check
from cdcapp.model.spec import load_spec
from cdcapp.runtime.web import sql_refusal

DATABASES = {"olap_db", "default", "system", "other"}


@pytest.mark.parametrize("sql", [
    "SELECT * FROM dim_customer_current LIMIT 3",
    "SELECT count() FROM olap_db.fact_order WHERE _is_deleted = 0",
    "WITH 1 AS x SELECT x",
    "SELECT c.country FROM dim_customer_current AS c",
    "SHOW TABLES",
    "SHOW TABLES FROM olap_db",
    "DESCRIBE TABLE olap_db.fact_order",
    "SELECT 'system.tables; url(x)' AS text  -- system.numbers",
    "SELECT 1;",
])
def test_reads_of_the_pipeline_database_are_allowed(sql: str) -> None:
    check(sql, "olap_db", DATABASES)


@pytest.mark.parametrize(("sql", "why"), [
    ("SELECT * FROM url('http://127.0.0.1:18083/connectors', JSONAsString, 'x String')", "table functions"),
    ("SELECT * FROM remote('127.0.0.1:9000', default.t)", "table functions"),
    ("SELECT * FROM file('/etc/passwd', LineAsString)", "table functions"),
    ("SELECT * FROM olap_db.fact_order JOIN s3 ('http://x') USING id", "table functions"),
    ("SELECT * FROM system.tables", "not system"),
    ("SELECT name FROM `system`.`users`", "not system"),
    ("SELECT * FROM information_schema.tables", "not information_schema"),
    ("SELECT * FROM other.secrets", "not other"),
    ("SHOW TABLES FROM other", "only the pipeline's database"),
    ("SHOW DATABASES", "only SELECT"),
    ("INSERT INTO olap_db.fact_order VALUES (1)", "only SELECT"),
    ("DROP TABLE olap_db.fact_order", "only SELECT"),
    ("SELECT 1; DROP TABLE olap_db.fact_order", "one statement"),
])
def test_everything_else_is_refused_with_the_reason(sql: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        check(sql, "olap_db", DATABASES)


def test_a_token_is_required_once_set_and_off_loopback_without_one() -> None:
    assert sql_refusal(None, None, "127.0.0.1") is None
    assert sql_refusal(None, None, "localhost") is None
    assert "CDCAPP_WEB_TOKEN" in sql_refusal(None, None, "0.0.0.0")
    assert "Bearer" in sql_refusal(None, "s3cret", "127.0.0.1")
    assert "Bearer" in sql_refusal("Bearer wrong", "s3cret", "0.0.0.0")
    assert sql_refusal("Bearer s3cret", "s3cret", "0.0.0.0") is None


def test_the_embedded_engine_reads_only_the_pipeline_database(tmp_path: Path) -> None:
    spec = load_spec()
    clickhouse = ClickHouse(f"chdb://{tmp_path / 'chdb'}", spec, "olap_db")

    async def run() -> None:
        try:
            # Unqualified names are the pipeline's tables: its database is the current one.
            (count,), = await clickhouse.read("SELECT count() FROM fact_order")
            assert int(count) == 0
            tables = {row[0] for row in await clickhouse.read("SHOW TABLES")}
            assert "fact_order" in tables and "dim_customer_current" in tables
            for sql in ("SELECT * FROM system.tables", "SELECT * FROM file('/etc/passwd', LineAsString)"):
                with pytest.raises(Refused):
                    await clickhouse.read(sql)
        finally:
            await clickhouse.close()

    asyncio.run(run())
