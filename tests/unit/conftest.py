"""Unit tests run without any service: network sockets are blocked (pytest-socket), and the Faust
app is built explicitly from unit settings (memory store, an unreachable ClickHouse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_socket import disable_socket

from cdcapp.config import Settings
from cdcapp.runtime.app import CdcApp, create_app


def pytest_runtest_setup() -> None:
    # asyncio's event loop wakes itself through a Unix socket pair.
    disable_socket(allow_unix_socket=True)


def unit_settings(state_dir: Path) -> Settings:
    return Settings(
        _env_file=None, app_id="cdcapp-unit", store="memory://", state_dir=state_dir,
        clickhouse_url="clickhouse://default@127.0.0.1:1/olap_db", internal_topic_prefix="cdcapp",
        source_topic_prefix="oltp", partitions=4, batch_linger_ms=0,
    )


@pytest.fixture(scope="session")
def cdc_app(tmp_path_factory: pytest.TempPathFactory) -> CdcApp:
    return create_app(unit_settings(tmp_path_factory.mktemp("state")))
