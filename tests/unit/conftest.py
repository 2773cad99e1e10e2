"""Unit tests run without any service: Faust agents on the memory store, test contexts only.

``cdcapp.app`` reads its settings once, at import: it is imported here under a memory store and
an unreachable ClickHouse, and the environment and the settings cache are restored at once, so
that tests of the real stack (and the workers they start) never inherit these values.
"""

from __future__ import annotations

import os

from cdcapp.config import get_settings

_UNIT_ENV = {"CDCAPP_STORE": "memory://", "CDCAPP_CLICKHOUSE_URL": "clickhouse://default@127.0.0.1:1/olap_db"}
_saved = {name: os.environ.get(name) for name in _UNIT_ENV}
os.environ.update(_UNIT_ENV)
get_settings.cache_clear()
try:
    import cdcapp.app  # noqa: E402,F401 - built once, with the unit-test settings
finally:
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()
