"""The ``cdcapp`` command: one entry point for the stack, the worker and the tools around it."""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import Enum
from pathlib import Path

import typer

from cdcapp.stack.cli import stack_app

app = typer.Typer(no_args_is_help=True, help="Change-data-capture from OLTP databases into ClickHouse.")
app.add_typer(stack_app, name="stack")

capture_app = typer.Typer(no_args_is_help=True, help="Capture changes from sources that have no Debezium connector.")
app.add_typer(capture_app, name="capture")


@capture_app.command("sqlite")
def capture_sqlite(
    db: Path = typer.Option(..., "--db", help="The SQLite database file."),
    uninstall: bool = typer.Option(False, "--uninstall", help="Drop the triggers, change log and state, then exit."),
    source_id: str = typer.Option("sqlite", "--source-id", help="source.name in the events."),
    tables: str = typer.Option("customers,products,orders,order_items", "--tables", help="Comma-separated tables."),
    poll_ms: int = typer.Option(100, "--poll-ms", min=1, help="Poll interval of the change log when idle."),
    batch: int = typer.Option(1000, "--batch", min=1, help="Change-log rows per Kafka round trip."),
) -> None:
    """Install trigger capture on a SQLite database and relay its changes to Kafka until stopped."""
    from cdcapp.config import get_settings
    from cdcapp.sources import sqlite_capture

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if uninstall:
            sqlite_capture.uninstall(db)
            return
        sqlite_capture.install(db, [t.strip() for t in tables.split(",") if t.strip()])
    except sqlite_capture.CaptureError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None

    async def relay() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sqlite_capture.run_relay(
            db, get_settings(), source_id, stop, poll_interval=poll_ms / 1000, batch_size=batch
        )

    asyncio.run(relay())


class SourceKind(str, Enum):
    postgres = "postgres"
    mariadb = "mariadb"
    sqlite = "sqlite"


@app.command()
def generate(
    source: SourceKind = typer.Option(..., "--source", help="Database to write to."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file (created if missing)."),
    rate: float = typer.Option(100.0, "--rate", min=0, help="Row changes per second; 0 = as fast as possible."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    changes: int | None = typer.Option(None, "--changes", help="Stop after this many row changes."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Run the e-commerce workload against an OLTP source."""
    from cdcapp.config import get_settings
    from cdcapp.sources.connections import connect, ensure_schema
    from cdcapp.sources.generator import print_stats, run_workload

    if source is SourceKind.sqlite and db is None:
        raise typer.BadParameter("--db is required for --source sqlite", param_hint="--db")
    conn = connect(source.value, get_settings(), db)
    try:
        ensure_schema(source.value, conn)
        stats = run_workload(conn, source.value, rate=rate, duration=duration, changes=changes, seed=seed)
    finally:
        conn.close()
    print_stats(stats)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a pipeline worker (the same as ``faust -A cdcapp.app worker``; extra options go to Faust).

    Each worker on one machine needs its own CDCAPP_WEB_PORT: it also names its RocksDB folder.
    """
    import sys

    from cdcapp.app import app as faust_app

    sys.argv = ["cdcapp", "worker", "--loglevel", "info", *ctx.args]
    faust_app.main()


@app.command()
def verify(
    source: SourceKind = typer.Option(..., "--source", help="The OLTP database to compare with."),
    source_id: str | None = typer.Option(None, "--source-id", help="_source in ClickHouse (default: --source)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file, for --source sqlite."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Keep comparing up to this many seconds until equal."),
    limit: int = typer.Option(10, "--limit", min=1, help="Differences shown per table."),
) -> None:
    """Ground-truth check: ClickHouse *_current views equal the OLTP join, row for row (exit 0)."""
    from cdcapp.config import get_settings
    from cdcapp.spec import load_spec
    from cdcapp.verify import Report
    from cdcapp.verify import verify as run_verify

    settings = get_settings()

    def progress(report: Report) -> None:
        if wait and not report.equal:
            summary = ", ".join(f"{t.table} {t.actual_rows}/{t.expected_rows}" for t in report.tables)
            typer.echo(f"not equal yet ({summary}); comparing again", err=True)

    report = run_verify(settings, load_spec(settings.spec_path), source.value, source_id, db, wait_s=wait,
                        on_attempt=progress)
    typer.echo(report.render(limit))
    raise typer.Exit(0 if report.equal else 1)


@app.command()
def demo(
    changes: int = typer.Option(3000, "--changes", min=1, help="Row changes the workload makes."),
    seed: int = typer.Option(1, "--seed"),
    settle: float = typer.Option(300.0, "--settle", help="Seconds to wait for ClickHouse to catch up."),
) -> None:
    """Run the whole pipeline once: stack, worker, workload, ground-truth check, an analytic query."""
    from rich.console import Console

    from cdcapp.config import get_settings
    from cdcapp.demo import run_demo

    equal = run_demo(get_settings(), changes, seed, settle, Console())
    raise typer.Exit(0 if equal else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
