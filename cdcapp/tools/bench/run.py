"""Run the benchmark's parts in order and write what they measured as JSON and a table."""

from __future__ import annotations

import json
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cdcapp import stack
from cdcapp.config import Settings
from cdcapp.model.spec import load_spec
from cdcapp.tools.bench import parts

PARTS = ("drain", "freshness", "load")


@dataclass(frozen=True)
class Options:
    parts: tuple[str, ...] = PARTS
    changes: int = 200_000
    rates: tuple[float, ...] = (500.0, 1000.0, 2000.0)
    freshness_s: float = 60.0
    load_items: int = 1_000_000
    hot_items: int = 200_000
    seed: int = 1
    out: Path | None = None
    #: leave the run's topics, databases and connector for inspection
    keep: bool = False


def run_bench(settings: Settings, options: Options, console: Console) -> dict[str, Any]:
    stack.up(settings, echo=lambda line: None)
    spec = load_spec(settings.spec_path)
    run_id = time.strftime("%m%d%H%M") + uuid.uuid4().hex[:4]
    log_dir = settings.state_path / "logs" / f"bench-{run_id}"
    echo = console.print
    report: dict[str, Any] = {"run": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "machine": {"cpus": _cpus(), "python": platform.python_version()},
                              "options": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in options.__dict__.items() if k not in ("out", "keep")}}
    if "drain" in options.parts or "freshness" in options.parts:
        drained = parts.drain(settings, spec, run_id, options.changes, options.seed, log_dir, echo)
        try:
            report["drain"] = drained.result
            if "freshness" in options.parts:
                report["freshness"] = parts.freshness(drained, list(options.rates), options.freshness_s, echo)
        finally:
            drained.pipeline.stop()
            drained.source.remove_connector()
            if not options.keep:
                drained.source.cleanup([drained.pipeline.settings.app_id, f"bench{run_id}_raw"])
    if "load" in options.parts:
        report["initial_load"] = parts.initial_load(settings, spec, run_id, options.load_items, options.hot_items,
                                                    log_dir, echo, keep=options.keep)
    out = options.out or settings.state_path / "bench" / f"bench-{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(summary(report))
    console.print(f"written to {out}")
    return report


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def summary(report: dict[str, Any]) -> Table:
    table = Table("measure", "value", title=f"cdcapp bench {report['run']}")
    drain = report.get("drain")
    if drain:
        table.add_row("drain: source changes/s", f"{drain['rate']:,.0f} ({drain['source_changes']:,} changes, "
                      f"{drain['seconds']}s, verify {'equal' if drain['verified_equal'] else 'NOT EQUAL'})")
        table.add_row("raw copy: records/s", f"{drain['raw_copy']['rate']:,.0f}")
        table.add_row("drain / raw copy", f"{drain['ratio_to_raw_copy']:.3f}")
        table.add_row("bare Faust agent: records/s", f"{drain['bare_agent']['rate']:,.0f}")
        table.add_row("sink rows per source change", f"{drain['sink_rows_per_change']:.2f}")
        table.add_row("worker CPU per source change", f"{drain['worker_cpu_us_per_change']:.0f} µs")
        table.add_row("drain peak RSS", f"{drain['peak_rss_mib']} MiB")
    for fresh in report.get("freshness", []):
        table.add_row(f"freshness at {fresh['target_rate']:,.0f}/s",
                      f"p50 {fresh['p50_s']}s p99 {fresh['p99_s']}s (achieved {fresh['achieved_rate']:,.0f}/s, "
                      f"{'flat' if fresh['flat'] else 'growing'}; Debezium's share p50 {fresh['debezium_p50_s']}s "
                      f"p99 {fresh['debezium_p99_s']}s; {fresh['worker_cpu_us_per_change']:.0f} µs of worker CPU "
                      f"per change, machine {fresh['machine_busy']:.0%} busy)")
    load = report.get("initial_load")
    if load:
        table.add_row("initial load: rows/s", f"{load['rate']:,.0f} ({load['rows']:,} rows, "
                      f"verify {'equal' if load['verified_equal'] else 'NOT EQUAL'})")
        table.add_row("initial load peak RSS", f"{load['peak_rss_mib']} MiB")
        fan = load["fanout"]
        table.add_row("fan-out", f"{fan['rows_renamed']:,}/{fan['children']:,} rows in {fan['seconds']}s, "
                      f"{'CRASHED' if fan['crashed'] else 'no crash'}, peak RSS {fan['peak_rss_mib']} MiB")
    return table
