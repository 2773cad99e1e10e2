"""``cdcapp rebuild``: fresh ClickHouse tables for the current spec, built from a backfill of the
sources next to the live ones, and swapped in once ``verify`` finds them equal.

The live tables keep serving throughout. The rebuilt ones are written by a new generation of the
pipeline (clickhouse/generation.py): an app id, consumer group, changelogs and internal topics of
its own, so its join state is built for the new spec from the first row.

1. Its consumer group is committed at the current end of every source topic, and the sources are
   backfilled (tools/backfill.py). Every row that exists is re-read, every change after the
   backfill starts streams in, and rows deleted long ago are simply not there.
2. Its workers (children of this command) fill ``<db>__<generation>`` until verify is equal there.
3. The hand-over record (``swapping``) makes the live workers exit; once their consumer group is
   empty, the rebuild's workers stop too, and one RENAME moves every live table to
   ``<db>__old_<generation>`` and every rebuilt one into ``<db>``. Each ``*_current`` view is then
   rebuilt beside the old one and swapped in by another RENAME: a reader sees the old tables, then
   the new ones (through the old view's columns for a moment), never an empty or half-filled one.
4. The record says ``live``: workers started from then on (the supervisor restarting the exited
   ones) join the new generation and carry on from where the rebuild's workers committed.

Only a ClickHouse server can be rebuilt this way: chdb lives inside one worker's process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cdcapp.clickhouse import generation as gen
from cdcapp.clickhouse.client import ClickHouseUrl, Target, create_tables, open_target, pipeline_database, string_literal
from cdcapp.clickhouse.ddl import quote, replace_current_view, table_shapes
from cdcapp.config import Settings
from cdcapp.kafka_admin import commit_offsets, end_offsets, epochs_topic, group_members, produce_one, read_latest
from cdcapp.model.spec import Spec
from cdcapp.sources.capture import captured
from cdcapp.tools import backfill as bf
from cdcapp.tools.epochs import create_epochs_topic, source_topics
from cdcapp.tools.pipeline import Pipeline

KINDS = ("postgres", "mariadb", "sqlite")


class RebuildFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Source:
    """A source to re-read: its kind and its ``_source`` in ClickHouse (the SQLite file for sqlite)."""

    kind: str
    source_id: str
    db: Path | None = None

    @classmethod
    def parse(cls, text: str, sqlite_db: Path | None) -> "Source":
        kind, _, source_id = text.partition("=")
        if kind not in KINDS:
            raise ValueError(f"--source {text!r}: the kind must be one of {', '.join(KINDS)} (kind[=source id])")
        if kind == "sqlite" and sqlite_db is None:
            raise ValueError("--db is required with --source sqlite")
        return cls(kind, source_id or kind, sqlite_db if kind == "sqlite" else None)


@dataclass(frozen=True)
class Plan:
    live: Settings  #: the generation writing the database now
    shadow: Settings  #: the generation being built
    generation: gen.Generation  #: the record that hands the database to it
    live_db: str
    shadow_db: str
    old_db: str


def plan(settings: Settings, spec: Spec, current: gen.Generation | None, stamp: str) -> Plan:
    """Names of the rebuild stamped ``stamp``; ``settings`` are the operator's (the first generation's)."""
    url = ClickHouseUrl.parse(settings.resolved_clickhouse_url)
    if url.scheme != "clickhouse":
        raise RebuildFailed("rebuild needs a ClickHouse server (CDCAPP_CLICKHOUSE_URL=clickhouse://...): chdb "
                            "lives inside one worker's process, where no second pipeline can write next to it")
    live_db = pipeline_database(settings, spec)
    suffix = f"r{stamp}"
    app_id, prefix = f"{settings.app_id}-{suffix}", f"{settings.internal_topic_prefix}-{suffix}"
    shadow_db = f"{live_db}__{suffix}"
    shadow = settings.model_copy(update={"app_id": app_id, "internal_topic_prefix": prefix,
                                         "clickhouse_url": url.with_database(shadow_db)})
    return Plan(gen.applied(settings, spec, current), shadow, gen.Generation(app_id, prefix, gen.spec_hash(spec), gen.SWAPPING),
                live_db, shadow_db, f"{live_db}__old_{suffix}")


def stamp_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S")


def existing_tables(target: Target, db: str) -> set[str]:
    return {str(r[0]) for r in target.query(f"SELECT name FROM system.tables WHERE database = {string_literal(db)}")}


def unnamed_sources(target: Target, spec: Spec, db: str, named: set[str]) -> dict[str, set[str]]:
    """Per live table, the ``_source``s in it that the rebuild would not re-read (their rows would be lost)."""
    present = existing_tables(target, db)
    missing = {}
    for table in table_shapes(spec):
        if table in present:
            held = {str(r[0]) for r in target.query(f"SELECT DISTINCT _source FROM {quote(db)}.{quote(table)}")}
            if held - named:
                missing[table] = held - named
    return missing


def swap_statement(plan: Plan, tables: list[str], live_tables: set[str]) -> str:
    """One RENAME: every live table out to the old database, every rebuilt one in."""
    live, shadow, old = (quote(d) for d in (plan.live_db, plan.shadow_db, plan.old_db))
    pairs = []
    for table in tables:
        name = quote(table)
        if table in live_tables:
            pairs.append(f"{live}.{name} TO {old}.{name}")
        pairs.append(f"{shadow}.{name} TO {live}.{name}")
    return "RENAME TABLE " + ", ".join(pairs)


@dataclass
class Rebuild:
    settings: Settings
    spec: Spec
    spec_path: Path | None
    sources: list[Source]
    log_dir: Path
    echo: Callable[[str], None]
    on_progress: Callable[[str, bf.Progress], None]
    workers: int = 1
    verify_wait_s: float = 900.0
    timeout_s: float = 3600.0

    def run(self, drop_old: bool) -> Plan:
        target = open_target(self.settings.resolved_clickhouse_url, pipeline_database(self.settings, self.spec))
        try:
            current = gen.current(target)
            plan_ = plan(self.settings, self.spec, current, stamp_now())
            self._check(target, current, plan_)
            pipeline = self._build(plan_)
            try:
                self._verify(pipeline)
                self._hand_over(target, plan_, current, pipeline)
            finally:
                pipeline.stop()
            self._swap(target, plan_)
            if drop_old:
                target.execute(f"DROP DATABASE IF EXISTS {quote(plan_.old_db)}")
                self.echo(f"dropped the old tables ({plan_.old_db})")
            return plan_
        finally:
            target.close()

    def _check(self, target: Target, current: gen.Generation | None, plan_: Plan) -> None:
        if current is not None and current.state != gen.LIVE:
            raise RebuildFailed(f"a rebuild is handing {plan_.live_db} over to {current.app_id} already (or "
                                "stopped while doing it): see docs/operations.md, 'Rebuild'")
        missing = unnamed_sources(target, self.spec, plan_.live_db, {s.source_id for s in self.sources})
        if missing:
            listed = "; ".join(f"{t}: {', '.join(sorted(s))}" for t, s in sorted(missing.items()))
            raise RebuildFailed(f"the live tables hold rows of sources this rebuild would not re-read ({listed}): "
                                "name every source with --source kind[=source id]")

    def _build(self, plan_: Plan) -> Pipeline:
        shadow = plan_.shadow
        self.echo(f"building generation {shadow.app_id} into {plan_.shadow_db}")
        asyncio.run(self._start_offsets(plan_))
        env = {"CDCAPP_APP_ID": shadow.app_id, "CDCAPP_INTERNAL_TOPIC_PREFIX": shadow.internal_topic_prefix,
               "CDCAPP_CLICKHOUSE_URL": shadow.clickhouse_url, "CDCAPP_STATE_DIR": str(shadow.state_path)}
        if self.spec_path is not None:
            env["CDCAPP_SPEC_PATH"] = str(self.spec_path.resolve())
        pipeline = Pipeline(shadow, env, self.log_dir, self.spec)
        try:
            for _ in range(self.workers):
                pipeline.start_worker()
            for source in self.sources:
                self.echo(f"re-reading {source.source_id}")
                asyncio.run(self._backfill(source))
        except BaseException:
            pipeline.stop()
            raise
        return pipeline

    async def _start_offsets(self, plan_: Plan) -> None:
        """The new group starts at the end of the source topics (the backfill supplies what came
        before), with the live generation's source epochs."""
        bootstrap = self.settings.kafka_bootstrap
        ends = await end_offsets(bootstrap, source_topics(self.settings, self.spec))
        await commit_offsets(bootstrap, plan_.shadow.app_id, ends)
        epochs = await read_latest(bootstrap, epochs_topic(plan_.live.internal_topic_prefix))
        if epochs:
            topic = await create_epochs_topic(plan_.shadow)
            for key, value in epochs.items():
                await produce_one(bootstrap, topic, key, value)

    async def _backfill(self, source: Source) -> None:
        tables = list(captured(self.spec, source.kind, self.settings))

        def show(progress: bf.Progress) -> None:
            self.on_progress(source.source_id, progress)

        await bf.backfill(self.settings, source.kind, tables, source.db, show, self.timeout_s)

    def _verify(self, pipeline: Pipeline) -> None:
        for source in self.sources:
            # The sources are being written meanwhile (live): equal but for changes in flight.
            report = pipeline.verify(source.kind, source.source_id, source.db, wait_s=self.verify_wait_s, live=True)
            if not (report.equal or report.in_flight_only):
                raise RebuildFailed(f"the rebuilt tables ({pipeline.settings.clickhouse_url}) are not equal to "
                                    f"{source.source_id}; the live ones are untouched:\n{report.render()}")
            self.echo(f"verify: {source.source_id} equal in the rebuilt tables"
                      + (f" but for {len(report.differences)} rows in flight" if report.in_flight_only else ""))

    def _hand_over(self, target: Target, plan_: Plan, current: gen.Generation | None, pipeline: Pipeline) -> None:
        """Make the live workers exit, then stop the rebuild's own (they flush and commit on the way)."""
        gen.write(target, plan_.generation)
        old_group = plan_.live.app_id
        self.echo(f"waiting for the workers of {old_group} to exit")
        started = time.monotonic()
        # A worker killed without leaving stays a member until its session times out.
        deadline = time.monotonic() + self.settings.session_timeout_s + 60
        while asyncio.run(group_members(self.settings.kafka_bootstrap, old_group)):
            if time.monotonic() > deadline:
                gen.write(target, current or gen.Generation(old_group, plan_.live.internal_topic_prefix, "", gen.LIVE))
                raise RebuildFailed(f"the workers of {old_group} did not leave their consumer group; the database "
                                    "stays theirs (restart them)")
            time.sleep(1)
        self.echo(f"they left in {time.monotonic() - started:.1f} s")
        pipeline.stop()

    def _swap(self, target: Target, plan_: Plan) -> None:
        tables = list(table_shapes(self.spec))
        live_tables = existing_tables(target, plan_.live_db)
        target.execute(f"CREATE DATABASE IF NOT EXISTS {quote(plan_.old_db)}")
        started = time.monotonic()
        target.execute(swap_statement(plan_, tables, live_tables))
        # Views of tables new to the database are created; the others are rebuilt for the new columns.
        create_tables(target, self.spec)
        for name, shape in table_shapes(self.spec).items():
            if shape.current_view in live_tables:
                for statement in replace_current_view(plan_.live_db, shape, plan_.shadow.app_id):
                    target.execute(statement)
        gen.write(target, gen.Generation(plan_.generation.app_id, plan_.generation.internal_topic_prefix,
                                         plan_.generation.spec_hash, gen.LIVE))
        # What is left there are the rebuilt tables' views, over tables that moved away.
        target.execute(f"DROP DATABASE IF EXISTS {quote(plan_.shadow_db)}")
        self.echo(f"swapped in {1000 * (time.monotonic() - started):.0f} ms (tables and views): {plan_.live_db} "
                  f"holds the rebuilt tables; the old ones are in {plan_.old_db}")
