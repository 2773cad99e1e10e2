"""Lifecycle of the native stack: idempotent up, down, up again, and a service killed by hand.

Every test leaves the stack running for the tests after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cdcapp import stack as native_stack
from cdcapp.config import Settings
from cdcapp.stack.base import process_alive

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]


def quiet(line: str) -> None:
    pass


def pids(settings: Settings) -> dict[str, int | None]:
    return {st.name: st.pid for st in native_stack.status(settings)}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdcapp.cli", "stack", *args], capture_output=True, text=True, timeout=120
    )


def test_second_up_is_a_no_op(stack: Settings) -> None:
    before = pids(stack)
    lines: list[str] = []
    started = time.monotonic()
    statuses = native_stack.up(stack, echo=lines.append)
    elapsed = time.monotonic() - started
    assert all(st.up for st in statuses)
    assert pids(stack) == before, "a second up must not restart anything"
    assert not [line for line in lines if "creating" in line or "updating" in line], lines
    assert elapsed < 30, f"a no-op up took {elapsed:.1f} s"


def test_down_then_up(stack: Settings) -> None:
    old = {name: pid for name, pid in pids(stack).items() if pid}
    native_stack.down(stack, echo=quiet)
    try:
        after_down = native_stack.status(stack)
        assert not any(st.up for st in after_down), [st for st in after_down if st.up]
        assert not any(process_alive(pid) for pid in old.values())
        assert cli("status").returncode != 0
    finally:
        native_stack.up(stack, echo=quiet)
    assert all(st.up for st in native_stack.status(stack))
    done = cli("status")
    assert done.returncode == 0, done.stdout + done.stderr


def test_killed_service_shows_down_and_comes_back(stack: Settings) -> None:
    clickhouse_pid = pids(stack)["clickhouse"]
    assert clickhouse_pid
    os.kill(clickhouse_pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 10
        while process_alive(clickhouse_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        by_name = {st.name: st for st in native_stack.status(stack)}
        assert not by_name["clickhouse"].up
        assert all(st.up for name, st in by_name.items() if name != "clickhouse")
        done = cli("status")
        assert done.returncode == 1
        assert any(line.startswith("clickhouse") and " down " in line for line in done.stdout.splitlines()), done.stdout
    finally:
        native_stack.up(stack, echo=quiet)
    new_pid = pids(stack)["clickhouse"]
    assert new_pid and new_pid != clickhouse_pid
    logs = cli("logs", "clickhouse", "-n", "5")
    assert logs.returncode == 0 and logs.stdout.strip()
