"""The stall check's reading of Connect's log: which walsender a PostgreSQL task failed to take
its slot from, and when (the PostgreSQL half of the check runs on the real stack, in the fault
matrix)."""

from __future__ import annotations

from datetime import datetime

from cdcapp.stack.connectors import slot_refusals

LOG = """\
[2026-11-26 16:49:15,548] INFO [cdcapp-postgres|task-0] Initializing PgOutput logical decoder publication (x)
[2026-11-26 16:49:15,575] WARN [cdcapp-postgres|task-0] Failed to start replication stream at LSN{0/292F3D0}, waiting for PT10S ms and retrying, attempt number 1 over 6 (x)
org.postgresql.util.PSQLException: ERROR: replication slot "cdcapp_postgres" is active for PID 20142
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2734) ~[postgresql-42.7.7.jar:42.7.7]
[2026-11-26 16:49:25,601] WARN [bench-x|task-0] Failed to start replication stream at LSN{0/292F3D0} (x)
org.postgresql.util.PSQLException: ERROR: replication slot "bench_slot" is active for PID 777
[2026-11-26 16:49:25,610] WARN [cdcapp-postgres|task-0] Failed to start replication stream at LSN{0/292F3D0}, attempt number 2 over 6 (x)
org.postgresql.util.PSQLException: ERROR: replication slot "cdcapp_postgres" is active for PID 20142
"""


def test_refusals_of_this_slot_since_the_window_start() -> None:
    assert slot_refusals(LOG, "cdcapp_postgres", datetime(2026, 11, 26, 16, 49)) == [20142, 20142]
    assert slot_refusals(LOG, "bench_slot", datetime(2026, 11, 26, 16, 49)) == [777]


def test_old_refusals_do_not_count() -> None:
    assert slot_refusals(LOG, "cdcapp_postgres", datetime(2026, 11, 26, 16, 49, 20)) == [20142]
    assert slot_refusals(LOG, "cdcapp_postgres", datetime(2026, 11, 26, 16, 50)) == []


def test_a_slot_name_is_matched_whole() -> None:
    assert slot_refusals(LOG, "cdcapp", datetime(2026, 11, 26, 16, 49)) == []
    assert slot_refusals(LOG.replace('"cdcapp_postgres"', '"a.b"'), "a_b", datetime(2026, 11, 26)) == []
