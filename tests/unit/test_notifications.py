"""Snapshot progress from Debezium's notifications, as Debezium 3.3 sends them."""

from __future__ import annotations

from cdcapp.debezium.notifications import Snapshot, follow


def note(kind: str, event: str, connector: str = "postgres", **data: str) -> dict:
    return {"id": "x", "type": event, "aggregate_type": f"{kind} Snapshot", "timestamp": 1_795_000_000_000,
            "additional_data": {"connector_name": connector, **data}}


def test_an_incremental_snapshot_from_start_to_end() -> None:
    snapshots: dict[str, Snapshot] = {}
    follow(snapshots, note("Incremental", "STARTED", data_collections="blog.authors,blog.posts"))
    follow(snapshots, note("Incremental", "IN_PROGRESS", current_collection_in_progress="blog.authors",
                           data_collections="blog.authors", last_processed_key="50", maximum_key="100"))
    view = snapshots["postgres"].view()
    assert (view["kind"], view["state"], view["current"], view["tables"]) == ("incremental", "running",
                                                                              "blog.authors", 2)
    assert view["fraction"] == 0.25  # half of one table of two
    follow(snapshots, note("Incremental", "TABLE_SCAN_COMPLETED", scanned_collection="blog.authors",
                           total_rows_scanned="100", status="SUCCEEDED"))
    follow(snapshots, note("Incremental", "TABLE_SCAN_COMPLETED", scanned_collection="blog.posts",
                           total_rows_scanned="7", status="EMPTY"))
    follow(snapshots, note("Incremental", "COMPLETED"))
    view = snapshots["postgres"].view()
    assert (view["state"], view["fraction"], view["rows"], view["current"]) == ("completed", 1.0, 107, None)


def test_a_skipped_initial_snapshot_leaves_the_last_one_standing_and_connectors_stay_apart() -> None:
    snapshots: dict[str, Snapshot] = {}
    follow(snapshots, note("Initial", "STARTED", connector="mariadb"))
    follow(snapshots, note("Initial", "IN_PROGRESS", connector="mariadb", current_collection_in_progress="db.t",
                           data_collections="db.t,db.u"))
    follow(snapshots, note("Initial", "TABLE_SCAN_COMPLETED", connector="mariadb", scanned_collection="db.t",
                           total_rows_scanned="3", status="SUCCEEDED"))
    assert snapshots["mariadb"].view()["fraction"] == 0.5 and "postgres" not in snapshots
    follow(snapshots, note("Initial", "COMPLETED", connector="mariadb"))
    follow(snapshots, note("Initial", "SKIPPED", connector="mariadb"))  # a restart: nothing to snapshot
    assert snapshots["mariadb"].state == "completed" and snapshots["mariadb"].rows == 3
    # A chunk of the next one whose STARTED was not read begins it; an abort ends it.
    follow(snapshots, note("Incremental", "IN_PROGRESS", connector="mariadb", current_collection_in_progress="db.t",
                           data_collections="db.t"))
    assert snapshots["mariadb"].kind == "incremental" and snapshots["mariadb"].state == "running"
    follow(snapshots, note("Incremental", "ABORTED", connector="mariadb"))
    assert snapshots["mariadb"].state == "aborted"
    follow(snapshots, {"type": "STARTED", "aggregate_type": "Other"})  # another kind of notification
    assert set(snapshots) == {"mariadb"}
