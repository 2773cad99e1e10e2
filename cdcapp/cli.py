"""The ``cdcapp`` command: one entry point for the stack, the worker and the tools around it."""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cdcapp.stack.cli import stack_app

if TYPE_CHECKING:
    from cdcapp.config import Settings

cli = typer.Typer(no_args_is_help=True, help="Change-data-capture from OLTP databases into ClickHouse.")
cli.add_typer(stack_app, name="stack")

capture_app = typer.Typer(no_args_is_help=True, help="Capture changes from sources that have no Debezium connector.")
cli.add_typer(capture_app, name="capture")


@capture_app.command("sqlite")
def capture_sqlite(
    db: Path = typer.Option(..., "--db", help="The SQLite database file."),
    uninstall: bool = typer.Option(False, "--uninstall", help="Drop the triggers, change log and state, then exit."),
    source_id: str = typer.Option("sqlite", "--source-id", help="source.name in the events."),
    tables: str = typer.Option("", "--tables", help="Comma-separated tables (default: the spec's entities'; "
                               "CDCAPP_SPEC_PATH, else the built-in spec)."),
    poll_ms: int = typer.Option(100, "--poll-ms", min=1, help="Poll interval of the change log when idle."),
    batch: int = typer.Option(1000, "--batch", min=1, help="Change-log rows per Kafka round trip."),
    spec_path: Path | None = typer.Option(None, "--spec", help="The spec whose tables to capture, each to its "
                                          "entity's topic (default: CDCAPP_SPEC_PATH, else the built-in one)."),
) -> None:
    """Install trigger capture on a SQLite database and relay its changes to Kafka until stopped."""
    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.sources import sqlite
    from cdcapp.sources.capture import captured

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        if uninstall:
            sqlite.uninstall(db)
            return
        topics = captured(load_spec(spec_path or settings.spec_path), "sqlite", settings)
        # A table the spec gains later is snapshotted by the relay: the captured set changed.
        sqlite.install(db, [t.strip() for t in tables.split(",") if t.strip()] or list(topics))
    except sqlite.CaptureError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None

    async def relay() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sqlite.run_relay(
            db, settings, source_id, stop, poll_interval=poll_ms / 1000, batch_size=batch, topics=topics
        )

    asyncio.run(relay())


source_app = typer.Typer(no_args_is_help=True, help="Operations on a source the pipeline reads.")
cli.add_typer(source_app, name="source")


@source_app.command("reset-epoch")
def reset_epoch(
    source_id: str = typer.Option(..., "--source-id", help="The source whose positions restarted (_source: "
                                  "postgres, mariadb, the SQLite relay's --source-id)."),
) -> None:
    """Order a source's changes from now on above all its earlier ones, after its positions restarted.

    Stop the workers and the source's connector (or relay) first; afterwards start the workers,
    then the connector with a new snapshot (docs/operations.md).
    """
    from cdcapp.model.spec import load_spec
    from cdcapp.tools.epochs import EpochRefused, reset_epoch_sync

    settings = _live_settings()
    try:
        new = reset_epoch_sync(settings, load_spec(settings.spec_path), source_id)
    except (EpochRefused, ValueError) as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    starts = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(new.epoch.starts.items()))
    typer.echo(f"source {new.source!r}: epoch {new.epoch.number} starts at {starts or 'the start of every topic'}")


dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: what failed, and putting it back once fixed.")
cli.add_typer(dlq_app, name="dlq")


def _live_settings() -> "Settings":
    """The settings of the live generation (a rebuild moves the pipeline to new topics)."""
    from cdcapp.clickhouse.generation import live
    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec

    settings = get_settings()
    return live(settings, load_spec(settings.spec_path), lambda line: typer.secho(line, fg=typer.colors.YELLOW,
                                                                                   err=True))


def _letters() -> list:
    from cdcapp.tools.dlq import read_letters

    settings = _live_settings()
    return asyncio.run(read_letters(settings.kafka_bootstrap, settings.internal_topic_prefix))


@dlq_app.command("list")
def dlq_list() -> None:
    """The dead letters grouped by stage and cause, with counts and the oldest and newest of each."""
    from rich.console import Console
    from rich.table import Table

    from cdcapp.tools.dlq import group

    letters = _letters()
    table = Table("stage", "letters", "replayed", "cause (values left out)", "oldest (id, UTC)", "newest (id, UTC)")
    for g in group(letters):
        table.add_row(g.stage, f"{g.count:,}", f"{g.replayed:,}", g.cause, f"{g.oldest.id}  {g.oldest.when}",
                      f"{g.newest.id}  {g.newest.when}")
    console = Console()
    console.print(table)
    replayed = sum(1 for letter in letters if letter.replayed)
    console.print(f"{len(letters):,} dead letters, {replayed:,} of them replayed; `cdcapp dlq show ID` shows one")


@dlq_app.command("show")
def dlq_show(letter_id: str = typer.Argument(..., help="The letter's id, <partition>:<offset> (from dlq list).")) -> None:
    """One dead letter, its original key and value decoded."""
    import orjson

    found = [letter for letter in _letters() if letter.id == letter_id]
    if not found:
        typer.secho(f"no dead letter {letter_id!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(orjson.dumps(found[0].decoded(), option=orjson.OPT_INDENT_2).decode())


@dlq_app.command("replay")
def dlq_replay(
    stage: str | None = typer.Option(None, "--stage", help="Only letters of this stage (ingest, stage, sink, "
                                     "clickhouse)."),
    error: str | None = typer.Option(None, "--error", help="Only letters whose error contains this text."),
    topic: str | None = typer.Option(None, "--topic", help="Only letters read from this topic."),
    since: str | None = typer.Option(None, "--since", help="Only letters dead-lettered at or after this ISO time "
                                     "(UTC unless it says otherwise)."),
    until: str | None = typer.Option(None, "--until", help="...and at or before this one."),
    again: bool = typer.Option(False, "--again", help="Also letters replayed before (skipped otherwise)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be sent, send nothing."),
) -> None:
    """Send dead letters' original records back to their topics, to be processed again.

    Fix the cause first (the spec, the ClickHouse table); a letter that fails again is
    dead-lettered again, and replaying twice only makes duplicates, which the pipeline absorbs.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cdcapp.tools.dlq import Filter, group, parse_time, replay

    matching = [letter for letter in _letters()
                if Filter(stage, error, topic, parse_time(since), parse_time(until))(letter)]
    chosen = [letter for letter in matching if again or not letter.replayed]
    if len(chosen) < len(matching):
        typer.echo(f"{len(matching) - len(chosen):,} matching letters were replayed before: skipped (--again sends "
                   "them again)")
    for g in group(chosen):
        typer.echo(f"{g.count:>8,}  {g.stage:<10} {g.cause}")
    if dry_run or not chosen:
        typer.echo(f"{len(chosen):,} letters {'would be' if chosen else 'are'} replayed"
                   + (" (dry run: nothing sent)" if dry_run else ""))
        return
    with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("replay", total=len(chosen))
        settings = _live_settings()
        sent = asyncio.run(replay(settings.kafka_bootstrap, settings.internal_topic_prefix, chosen,
                                  lambda letter: bar.advance(task), settings.replication_factor))
    typer.echo(f"{sent:,} letters sent back to their topics")


class SourceKind(str, Enum):
    postgres = "postgres"
    mariadb = "mariadb"
    sqlite = "sqlite"


@cli.command()
def generate(
    source: SourceKind = typer.Option(..., "--source", help="Database to write to."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file (created if missing)."),
    rate: float = typer.Option(100.0, "--rate", min=0, help="Row changes per second; 0 = as fast as possible."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    changes: int | None = typer.Option(None, "--changes", help="Stop after this many row changes."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    spec_path: Path | None = typer.Option(None, "--spec", help="A pipeline spec: write random valid rows to its "
                                          "entities' source tables instead of running the e-commerce workload."),
    create: bool = typer.Option(False, "--create", help="With --spec: first create the spec's source tables "
                                "(and schemas) that are missing."),
) -> None:
    """Run a workload against an OLTP source: the e-commerce application, or any spec's (--spec)."""
    from functools import partial

    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.sources.connections import connect, create_oltp_schema
    from cdcapp.tools.console import WorkloadProgress, print_stats
    from cdcapp.tools.spec_workload import SpecWorkload, WorkloadError, check_tables, create_tables
    from cdcapp.tools.workload import Workload, WorkloadFactory, run_workload

    if source is SourceKind.sqlite and db is None:
        raise typer.BadParameter("--db is required for --source sqlite", param_hint="--db")
    if create and spec_path is None:
        raise typer.BadParameter("--create needs --spec (the e-commerce tables are created anyway)",
                                 param_hint="--create")
    spec = load_spec(spec_path) if spec_path is not None else None
    conn = connect(source.value, get_settings(), db)
    try:
        workload: WorkloadFactory = Workload
        if spec is None:
            create_oltp_schema(source.value, conn)
        else:
            try:
                if create:
                    create_tables(spec, source.value, conn)
                check_tables(spec, source.value, conn)
            except WorkloadError as e:
                typer.secho(str(e), fg=typer.colors.RED, err=True)
                raise typer.Exit(1) from None
            workload = partial(SpecWorkload, spec)
        with WorkloadProgress(changes, duration) as progress:
            stats = run_workload(
                conn, source.value, rate=rate, duration=duration, changes=changes, seed=seed,
                on_progress=progress.update, workload=workload,
            )
            progress.finish(stats)
    finally:
        conn.close()
    print_stats(stats)


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a pipeline worker (the same as ``faust -A cdcapp.app worker``; extra options go to Faust).

    Each worker on one machine needs its own CDCAPP_WEB_PORT: it also names its RocksDB folder.
    """
    import sys

    from cdcapp.app import app as faust_app

    sys.argv = ["cdcapp", "worker", "--loglevel", "info", *ctx.args]
    faust_app.main()


@cli.command()
def verify(
    source: SourceKind = typer.Option(..., "--source", help="The OLTP database to compare with."),
    source_id: str | None = typer.Option(None, "--source-id", help="_source in ClickHouse (default: --source)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file, for --source sqlite."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Keep comparing up to this many seconds until equal."),
    limit: int = typer.Option(10, "--limit", min=1, help="Differences shown per table."),
    spec_path: Path | None = typer.Option(None, "--spec", help="The spec (default: CDCAPP_SPEC_PATH, else the "
                                          "built-in one)."),
) -> None:
    """Ground-truth check: ClickHouse *_current views equal the OLTP join, row for row (exit 0)."""
    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.tools.verify import Report
    from cdcapp.tools.verify import verify as run_verify

    settings = get_settings()

    def progress(report: Report) -> None:
        if wait and not report.equal:
            summary = ", ".join(f"{t.table} {t.actual_rows}/{t.expected_rows}" for t in report.tables)
            typer.echo(f"not equal yet ({summary}); comparing again", err=True)

    report = run_verify(settings, load_spec(spec_path or settings.spec_path), source.value, source_id, db,
                        wait_s=wait, on_attempt=progress)
    typer.echo(report.render(limit))
    raise typer.Exit(0 if report.equal else 1)


@cli.command()
def backfill(
    source: SourceKind = typer.Option(..., "--source", help="The source to re-read."),
    table: list[str] = typer.Option([], "--table", help="A table to re-read (repeatable); default: every entity "
                                    "of the spec."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file, for --source sqlite."),
    source_id: str | None = typer.Option(None, "--source-id", help="_source in ClickHouse, for the final verify "
                                         "(default: --source)."),
    verify_s: float = typer.Option(600.0, "--verify-wait", min=0, help="Then wait up to this many seconds for "
                                   "verify to find ClickHouse equal (0: skip verify)."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1, help="Give up if the re-read takes longer."),
) -> None:
    """Re-read the current rows of source tables while streaming goes on (exit 0 once verify is equal).

    PostgreSQL and MariaDB use Debezium's incremental snapshot; SQLite logs its rows again for the
    relay. Backfilled rows never overwrite newer streamed changes (docs/operations.md).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.sources.capture import resolve_tables
    from cdcapp.sources.sqlite import CaptureError
    from cdcapp.tools import backfill as bf
    from cdcapp.tools.verify import verify as run_verify

    settings = get_settings()
    spec = load_spec(settings.spec_path)
    try:
        tables = resolve_tables(spec, source.value, settings, list(table) or list(spec.entities))
    except LookupError as e:
        raise typer.BadParameter(str(e), param_hint="--table") from None
    if source is SourceKind.sqlite and db is None:
        raise typer.BadParameter("--db is required for --source sqlite", param_hint="--db")
    columns = (TextColumn("[bold]backfill"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TextColumn("{task.fields[tables]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("backfill", total=1.0, tables="")

        def show(progress: bf.Progress) -> None:
            done = sum(1 for t in progress.tables.values() if t.rows is not None)
            bar.update(task, completed=progress.fraction, tables=f"{done}/{len(progress.tables)} tables")

        try:
            result = asyncio.run(bf.backfill(settings, source.value, tables, db, show, timeout))
        except (bf.BackfillFailed, CaptureError) as e:
            typer.secho(str(e), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    for name, progress in result.tables.items():
        typer.echo(f"{name}: {progress.rows:,} rows re-read")
    if verify_s:
        report = run_verify(settings, spec, source.value, source_id, db, wait_s=verify_s)
        typer.echo(report.render())
        raise typer.Exit(0 if report.equal else 1)


spec_app = typer.Typer(no_args_is_help=True, help="The pipeline spec: what the worker will build from it.")
cli.add_typer(spec_app, name="spec")


@spec_app.command("check")
def spec_check(path: Path | None = typer.Argument(None, help="The spec file (default: CDCAPP_SPEC_PATH, else the "
                                                  "built-in one).")) -> None:
    """Print the model (entities, refs, dimensions, facts with their join paths) and the ClickHouse
    DDL; a mistake is one line naming the file and the place in it (exit 2)."""
    from cdcapp.clickhouse.client import pipeline_database
    from cdcapp.clickhouse.ddl import ddl
    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec

    settings = get_settings()
    source = path or settings.spec_path
    spec = load_spec(source)
    typer.echo(f"spec {source or 'built-in (cdcapp/model/specs/ecommerce.yaml)'}: ok")
    typer.echo("entities:")
    for name, entity in spec.entities.items():
        refs = ", ".join(f"{r} -> {ref.entity} ({', '.join(ref.columns)})" for r, ref in entity.refs.items())
        typer.echo(f"  {name}: key ({', '.join(entity.key)}), {len(entity.columns)} columns"
                   + (f"; refs {refs}" if refs else ""))
    typer.echo("dimensions:")
    for dim in spec.dimensions:
        kind = "mirrors the source table" if dim.columns == "all" else "spec columns"
        typer.echo(f"  {dim.table} <- {dim.entity} ({kind})")
    typer.echo("facts:")
    for fact in spec.facts:
        typer.echo(f"  {fact.table}: one row per {fact.entity}")
        for column, path_text in fact.columns.items():
            refs, source_column, column_type = spec.resolve_path(fact.entity, path_text)
            current = trail = fact.entity
            for ref_name in refs:
                current = spec.entities[current].refs[ref_name].entity
                trail += f" -{ref_name}-> {current}"
            typer.echo(f"    {column} {column_type.name} = {trail}.{source_column}")
        for name, measure in fact.measures.items():
            typer.echo(f"    {name} {measure.type} = {measure.expr}")
    typer.echo("ClickHouse DDL:")
    for statement in ddl(spec, pipeline_database(settings, spec)):
        typer.echo(f"  {statement};")


@cli.command()
def status(as_json: bool = typer.Option(False, "--json", help="The same content as JSON.")) -> None:
    """Every stage at a glance: capture, Kafka, workers, ClickHouse, dead letters (exit 1 when unhealthy)."""
    from rich.console import Console
    from rich.table import Table

    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.tools.status import gather

    settings = get_settings()
    found = gather(settings, load_spec(settings.spec_path))
    if as_json:
        typer.echo(found.to_json().decode())
    else:
        table = Table("stage", "what", "", "state", title=f"cdcapp status: {found.app_id}")
        for check in found.checks:
            table.add_row(check.area, check.name, "[green]ok" if check.ok else "[bold red]FAIL", check.detail)
        console = Console(width=max(120, Console().width))
        console.print(table)
        console.print("[green]healthy" if found.healthy else "[bold red]unhealthy")
    raise typer.Exit(0 if found.healthy else 1)


@cli.command()
def rebuild(
    source: list[str] = typer.Option(..., "--source", help="A source feeding the pipeline, as kind[=source id] "
                                     "(postgres, mariadb, sqlite=<relay's --source-id>); repeat for each."),
    db: Path | None = typer.Option(None, "--db", help="SQLite database file, for --source sqlite."),
    spec_path: Path | None = typer.Option(None, "--spec", help="The spec to build for (default: CDCAPP_SPEC_PATH, "
                                          "else the built-in one). Run the workers with it afterwards."),
    workers: int = typer.Option(1, "--workers", min=1, help="Workers building the new tables."),
    drop_old: bool = typer.Option(False, "--drop-old", help="Drop the replaced tables after the swap."),
    verify_s: float = typer.Option(900.0, "--verify-wait", min=1, help="How long the new tables may take to "
                                   "become equal to the sources."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1, help="Give up if a source's re-read takes longer."),
) -> None:
    """Build fresh ClickHouse tables for the spec from a backfill, next to the live ones, and swap
    them in once verify finds them equal (docs/operations.md, "Rebuild").

    The live workers exit at the swap (code 75); run again with this spec, they join the new tables.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cdcapp.config import get_settings
    from cdcapp.model.spec import load_spec
    from cdcapp.sources.sqlite import CaptureError
    from cdcapp.tools import backfill as bf
    from cdcapp.tools import rebuild as rb

    settings = get_settings()
    spec_path = spec_path or settings.spec_path
    spec = load_spec(spec_path)
    try:
        sources = [rb.Source.parse(text, db) for text in source]
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--source") from None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        tasks: dict[str, int] = {}

        def show(source_id: str, progress: bf.Progress) -> None:
            if source_id not in tasks:
                tasks[source_id] = bar.add_task(f"re-read {source_id}", total=1.0)
            bar.update(tasks[source_id], completed=progress.fraction)

        job = rb.Rebuild(settings, spec, spec_path, sources, settings.state_path / "logs", bar.console.print, show,
                         workers=workers, verify_wait_s=verify_s, timeout_s=timeout)
        try:
            plan = job.run(drop_old)
        except (rb.RebuildFailed, bf.BackfillFailed, CaptureError) as e:
            typer.secho(str(e), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    typer.echo(f"generation {plan.shadow.app_id} is live: start the workers with this spec "
               f"({spec_path or 'the built-in one'}); they join it")


@cli.command()
def demo(
    changes: int = typer.Option(3000, "--changes", min=1, help="Row changes the workload makes."),
    seed: int = typer.Option(1, "--seed"),
    settle: float = typer.Option(300.0, "--settle", help="Seconds to wait for ClickHouse to catch up."),
) -> None:
    """Run the whole pipeline once: stack, worker, workload, ground-truth check, an analytic query."""
    from rich.console import Console

    from cdcapp.config import get_settings
    from cdcapp.tools.demo import run_demo

    equal = run_demo(get_settings(), changes, seed, settle, Console())
    raise typer.Exit(0 if equal else 1)


@cli.command()
def bench(
    parts: str = typer.Option("drain,freshness,load", "--parts", help="Comma-separated: drain, freshness, load."),
    changes: int = typer.Option(200_000, "--changes", min=1000, help="Source changes queued for the drain."),
    rates: str = typer.Option("500,1000,2000", "--rates", help="Freshness: generator rates in changes/s."),
    freshness_s: float = typer.Option(60.0, "--freshness-seconds", min=5, help="Freshness: seconds per rate."),
    load_items: int = typer.Option(1_000_000, "--load-items", min=1000, help="Initial load: order items."),
    hot_items: int = typer.Option(200_000, "--hot-items", min=1, help="Fan-out: items of the renamed product."),
    out: Path | None = typer.Option(None, "--out", help="JSON result file (default <state>/bench/...)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the run's topics, databases and connector."),
) -> None:
    """Measure throughput, freshness and footprint on the local stack (docs/performance.md)."""
    from rich.console import Console

    from cdcapp.config import get_settings
    from cdcapp.tools.bench.run import PARTS, Options, run_bench

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise typer.BadParameter(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    options = Options(chosen, changes, tuple(float(r) for r in rates.split(",")), freshness_s, load_items,
                      min(hot_items, load_items), out=out, keep=keep)
    run_bench(get_settings(), options, Console())


def main() -> None:
    from cdcapp.model.spec import SpecError

    try:
        cli()
    except SpecError as exc:  # one line, not a traceback: the file and the place in it
        typer.secho(f"spec: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
