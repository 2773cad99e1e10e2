"""Unit tests run without any service: Faust agents on the memory store, test contexts only."""

from __future__ import annotations

import os

# Must be set before cdcapp.app is imported: settings are read once.
os.environ.setdefault("CDCAPP_STORE", "memory://")
os.environ.setdefault("CDCAPP_CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:1/olap_db")
