"""The bench's timings: a freshness marker's time broken into hops, where a drain ends, and how
busy the machine was."""

import os
import time
from types import SimpleNamespace

from cdcapp.tools.bench.parts import HOPS, Markers, hop_summary, last_insert, machine_cpu


def test_each_step_is_the_time_between_consecutive_hops_and_untraced_markers_are_left_out() -> None:
    markers = Markers(SimpleNamespace(name="bench1"), "db")  # type: ignore[arg-type]
    traced: dict[str, dict[str, float]] = {hop: {} for hop in HOPS[2:-1]}
    for item in range(100):
        start = 1000.0 + item
        markers.committed[item] = start
        markers.published[item] = start + 0.1
        for offset, hop in enumerate(HOPS[2:-1], start=2):
            traced[hop][f"bench1|{item}"] = start + 0.1 * offset + (1.0 if item == 99 and hop == "fact" else 0)
        markers.seen[item] = start + 0.5 + (1.0 if item == 99 else 0)
    markers.committed[100] = 2000.0  # never published: not traced end to end

    summary = hop_summary(markers, traced)

    assert summary["traced"] == 100
    assert summary["committed->published"]["p50_s"] == 0.1
    assert summary["fact->visible"]["p50_s"] == 0.1
    # the slowest marker lost its second in joined->fact, and the tail says so
    assert summary["joined->fact"]["slowest_1pct_mean_s"] == 1.1
    assert summary["fact->visible"]["slowest_1pct_mean_s"] == 0.1


def test_a_drain_ends_at_the_workers_last_insert_not_when_its_commit_is_seen() -> None:
    caught_up = time.monotonic()
    inserted_3s_before = SimpleNamespace(metric_total=lambda name: time.time() - 3.0)
    assert 2.9 < caught_up - last_insert(inserted_3s_before, caught_up) < 3.1  # type: ignore[arg-type]
    never_inserted = SimpleNamespace(metric_total=lambda name: 0.0)
    assert last_insert(never_inserted, caught_up) == caught_up  # type: ignore[arg-type]


def test_machine_busy_is_a_share_of_the_machines_time_that_grows_with_work() -> None:
    busy_before, total_before = machine_cpu()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # 0.2 s of this process's CPU, counted in the busy time
        pass
    busy, total = machine_cpu()
    assert 0 < busy - busy_before <= total - total_before
    assert busy - busy_before >= 0.15 * os.sysconf("SC_CLK_TCK")


def test_a_marker_joined_within_one_batch_has_no_sub_or_info_on_the_topic_and_those_steps_take_no_time() -> None:
    markers = Markers(SimpleNamespace(name="bench1"), "db")  # type: ignore[arg-type]
    markers.committed[1], markers.published[1], markers.seen[1] = 1000.0, 1000.1, 1000.6
    summary = hop_summary(markers, {"subscribed": {}, "joined": {}, "fact": {"bench1|1": 1000.3}})
    assert (summary["traced"], summary["joined_in_batch"]) == (1, 1)
    assert [summary[step]["p50_s"] for step in ("published->subscribed", "subscribed->joined", "joined->fact")] \
        == [0.2, 0.0, 0.0]
