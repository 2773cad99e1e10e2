"""The workload's terminal output: a live progress bar and the closing summary (rich)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdcapp.tools.workload import WorkloadStats


class WorkloadProgress:
    """A rich progress bar (changes done, rate), refreshed a few times a second.

    ``update`` is ``run_workload``'s ``on_progress``; ``finish`` shows the final stats. The bar
    runs while the ``with`` block does.
    """

    def __init__(self, changes: int | None, duration: float | None) -> None:
        self.by_changes = changes is not None
        self.progress = Progress(
            TextColumn("[bold]generate"),
            BarColumn(),
            TextColumn("{task.fields[changes]:>9,} changes"),
            TextColumn("{task.fields[rate]:>8,.0f}/s"),
            TimeElapsedColumn(),
        )
        total = changes if changes is not None else duration
        self.task = self.progress.add_task("generate", total=total, changes=0, rate=0.0)
        self.last = 0.0

    def __enter__(self) -> WorkloadProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, done: int, elapsed: float) -> None:
        if elapsed - self.last < 0.2:
            return
        self.last = elapsed
        self.progress.update(
            self.task,
            completed=done if self.by_changes else elapsed,
            changes=done,
            rate=done / elapsed if elapsed else 0.0,
        )

    def finish(self, stats: WorkloadStats) -> None:
        self.progress.update(
            self.task,
            completed=stats.changes if self.by_changes else stats.elapsed_s,
            changes=stats.changes,
            rate=stats.rate,
        )


def print_stats(stats: WorkloadStats) -> None:
    console = Console()
    console.print(
        f"{stats.changes:,} row changes in {stats.transactions:,} transactions, "
        f"{stats.elapsed_s:.1f}s: [bold]{stats.rate:,.0f} changes/s[/bold]"
        + (f", {stats.errors} failed transactions" if stats.errors else "")
    )
    ops = Table("operation", "transactions")
    for kind, n in sorted(stats.ops.items()):
        ops.add_row(kind, f"{n:,}")
    rows = Table("table.change", "rows")
    for key, n in sorted(stats.rows.items()):
        rows.add_row(key, f"{n:,}")
    console.print(ops, rows)
