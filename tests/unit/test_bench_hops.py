"""The freshness bench's breakdown of a marker's time into hops."""

from types import SimpleNamespace

from cdcapp.tools.bench.parts import HOPS, Markers, hop_summary


def test_each_step_is_the_time_between_consecutive_hops_and_untraced_markers_are_left_out() -> None:
    markers = Markers(SimpleNamespace(name="bench1"), "db")  # type: ignore[arg-type]
    traced: dict[str, dict[str, float]] = {hop: {} for hop in HOPS[2:-1]}
    for item in range(100):
        start = 1000.0 + item
        markers.committed[item] = start
        markers.published[item] = start + 0.1
        for offset, hop in enumerate(HOPS[2:-1], start=2):
            traced[hop][f"bench1|{item}"] = start + 0.1 * offset + (1.0 if item == 99 and hop == "fact" else 0)
        markers.seen[item] = start + 0.6 + (1.0 if item == 99 else 0)
    markers.committed[100] = 2000.0  # never published: not traced end to end

    summary = hop_summary(markers, traced)

    assert summary["traced"] == 100
    assert summary["committed->published"]["p50_s"] == 0.1
    assert summary["fact->visible"]["p50_s"] == 0.1
    # the slowest marker lost its second in joined->fact, and the tail says so
    assert summary["joined->fact"]["slowest_1pct_mean_s"] == 1.1
    assert summary["fact->visible"]["slowest_1pct_mean_s"] == 0.1
