"""The fault matrix's record: one row per fault, written to ``<state>/faults/faults-<time>.json``
and printed at the end of the session (docs/reliability.md holds a run's table)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import orjson
import pytest

from cdcapp.config import get_settings


@dataclass
class FaultResult:
    fault: str
    source: str
    changes_written: int
    rows_verified: int
    dead_letters: int
    recover_s: float
    equal: bool
    note: str = ""


RESULTS: list[FaultResult] = []


@pytest.fixture
def record() -> list[FaultResult]:
    return RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    folder = get_settings().state_path / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"faults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps([asdict(r) for r in RESULTS], option=orjson.OPT_INDENT_2))
    terminalreporter.section("fault matrix")
    terminalreporter.write_line("| fault | source | changes written | rows verified | dead letters | "
                                "recovered (s) | verify |")
    terminalreporter.write_line("|---|---|---|---|---|---|---|")
    for r in RESULTS:
        verdict = "equal" if r.equal else "DIFFERENT"
        terminalreporter.write_line(f"| {r.fault} | {r.source} | {r.changes_written:,} | {r.rows_verified:,} | "
                                    f"{r.dead_letters} | {r.recover_s:.1f} | {verdict}{' - ' + r.note if r.note else ''} |")
    terminalreporter.write_line(f"written to {path}")
