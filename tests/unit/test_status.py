"""``cdcapp status``'s verdicts that need no service: no worker is unhealthy, dead letters are not."""

from __future__ import annotations

import orjson

from cdcapp.tools.status import Check, Status, workers


def test_no_worker_in_the_group_is_unhealthy() -> None:
    (check,) = workers("cdcapp", [])
    assert not check.ok and "no worker" in check.detail


def test_dead_letters_are_shown_but_leave_the_status_healthy() -> None:
    found = Status("cdcapp", [Check("dead letters", "cdcapp.dlq", True, "3 letters: cdcapp dlq list", {"letters": 3})])
    assert found.healthy
    assert orjson.loads(found.to_json())["checks"][0]["data"] == {"letters": 3}
    assert not Status("cdcapp", [*found.checks, Check("clickhouse", "x", False, "unreachable")]).healthy


def test_json_log_lines() -> None:
    import logging

    from cdcapp.logfmt import JsonFormatter

    record = logging.LogRecord("cdcapp.runtime.sink", logging.INFO, __file__, 1, "flushed %d rows", (3,), None)
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["msg"]) == ("info", "cdcapp.runtime.sink", "flushed 3 rows")
