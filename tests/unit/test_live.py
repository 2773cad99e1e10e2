"""The status page's charts: rates and p99 lag per interval from two samples of the metrics."""

from __future__ import annotations

from cdcapp.runtime.live import Sample, quantile, series


def test_the_quantile_is_the_bound_of_the_bucket_it_falls_in_for_the_interval_only() -> None:
    before = [(0.1, 10.0), (0.5, 10.0), (1.0, 10.0), (float("inf"), 10.0)]
    # 100 new observations: 90 under 0.1 s, 8 more under 0.5 s, 2 more under 1 s.
    after = [(0.1, 100.0), (0.5, 108.0), (1.0, 110.0), (float("inf"), 110.0)]
    assert quantile(0.5, before, after) == 0.1
    assert quantile(0.95, before, after) == 0.5
    assert quantile(0.99, before, after) == 1.0
    assert quantile(0.99, after, after) is None  # nothing observed in between


def test_series_give_rows_per_second_and_lag_per_interval() -> None:
    lines = series([
        Sample(100.0, {"fact_order": 0.0}, {"fact_order": [(0.5, 0.0), (float("inf"), 0.0)]}),
        Sample(102.0, {"fact_order": 40.0}, {"fact_order": [(0.5, 40.0), (float("inf"), 40.0)]}),
    ])
    assert lines["fact_order"] == {"rows_per_s": [[102.0, 20.0]], "lag_p99_s": [[102.0, 0.5]]}
