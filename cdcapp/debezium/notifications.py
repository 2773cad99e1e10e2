"""Debezium's notifications (``notification.enabled.channels=sink``): how far a snapshot is.

A connector reports its initial snapshot and every incremental one (``cdcapp backfill``, tables
added to it) on its notification topic: STARTED, IN_PROGRESS (the table being read; for an
incremental snapshot also the last key read and the table's largest key), TABLE_SCAN_COMPLETED
(rows read), then COMPLETED or ABORTED. An initial snapshot gives every notification an id of
its own; an incremental one uses the signal's id throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = {"Initial Snapshot": "initial", "Incremental Snapshot": "incremental"}
ENDED = {"COMPLETED": "completed", "ABORTED": "aborted"}


@dataclass
class TableProgress:
    """Where the scan of one table is: keys read of the largest key, rows read when done."""

    last_key: str | None = None
    maximum_key: str | None = None
    rows: int | None = None
    #: the share done, where it is known otherwise than by keys (the SQLite relay's position)
    share: float | None = None

    @property
    def fraction(self) -> float | None:
        if self.rows is not None:
            return 1.0
        if self.share is not None:
            return self.share
        try:
            return min(1.0, int(self.last_key) / int(self.maximum_key)) if self.maximum_key else None
        except (TypeError, ValueError):  # a composite or text key: progress only by table
            return None


@dataclass
class Progress:
    tables: dict[str, TableProgress] = field(default_factory=dict)
    done: bool = False

    @property
    def fraction(self) -> float:
        parts = [t.fraction or 0.0 for t in self.tables.values()]
        return sum(parts) / len(parts) if parts else 0.0


@dataclass
class Snapshot:
    """The newest snapshot of one connector, as its notifications tell it."""

    kind: str  # initial | incremental
    started_ms: int
    state: str = "running"  # running | completed | aborted
    progress: Progress = field(default_factory=Progress)
    current: str | None = None
    updated_ms: int = 0

    @property
    def rows(self) -> int:
        return sum(t.rows or 0 for t in self.progress.tables.values())

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": self.state, "fraction": 1.0 if self.state == "completed" else
                self.progress.fraction, "current": self.current, "tables": len(self.progress.tables),
                "rows": self.rows, "updated_ms": self.updated_ms}


def follow(snapshots: dict[str, Snapshot], body: dict[str, Any]) -> None:
    """One notification into ``snapshots`` (connector name -> its newest snapshot)."""
    kind = KINDS.get(body.get("aggregate_type", ""))
    data = body.get("additional_data") or {}
    connector, event, ts = data.get("connector_name"), body.get("type"), int(body.get("timestamp") or 0)
    if kind is None or not connector or event == "SKIPPED":  # skipped: the one before still stands
        return
    snapshot = snapshots.get(connector)
    # A notification after the end of the one before, without a STARTED, begins the next one too.
    if (event == "STARTED" or snapshot is None or snapshot.kind != kind
            or (snapshot.state != "running" and event not in ENDED)):
        snapshot = snapshots[connector] = Snapshot(kind, ts)
    snapshot.updated_ms = max(snapshot.updated_ms, ts)
    for name in filter(None, str(data.get("data_collections") or "").split(",")):
        snapshot.progress.tables.setdefault(name, TableProgress())
    if event == "IN_PROGRESS":
        snapshot.current = data.get("current_collection_in_progress")
        table = snapshot.progress.tables.setdefault(str(snapshot.current), TableProgress())
        table.last_key, table.maximum_key = data.get("last_processed_key"), data.get("maximum_key")
    elif event == "TABLE_SCAN_COMPLETED":
        table = snapshot.progress.tables.setdefault(str(data.get("scanned_collection")), TableProgress())
        table.rows = int(data.get("total_rows_scanned") or 0)
    elif event in ENDED:
        snapshot.state = ENDED[event]
        snapshot.current = None
