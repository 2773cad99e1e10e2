"""Change capture for SQLite: triggers fill a change log, a relay publishes it to Kafka.

:mod:`~cdcapp.sources.sqlite.triggers` installs the capture in the database,
:mod:`~cdcapp.sources.sqlite.relay` turns the change log into Debezium events
(:mod:`cdcapp.debezium.encode`) on the source topics.
"""

from cdcapp.sources.sqlite.relay import LogRow, change_records, run_relay
from cdcapp.sources.sqlite.triggers import (DEFAULT_TABLES, CaptureError, follow_alters, install, read_table_info,
                                            uninstall)

__all__ = [
    "DEFAULT_TABLES",
    "CaptureError",
    "LogRow",
    "change_records",
    "follow_alters",
    "install",
    "read_table_info",
    "run_relay",
    "uninstall",
]
