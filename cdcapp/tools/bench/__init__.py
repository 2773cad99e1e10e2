"""``cdcapp bench`` (``make bench``): the pipeline's throughput, freshness and footprint, measured
on the local stack against baselines run in the same process, so that ratios stay meaningful on
a noisy machine. A benchmark is a measurement: it prints numbers and writes JSON, it asserts
nothing."""
