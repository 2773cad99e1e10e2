"""Which generation of the pipeline writes a ClickHouse database.

A generation is the namespace a pipeline's state lives in: its Faust app id (consumer group and
changelog topics) and its internal topic prefix. The settings give the first one. ``cdcapp
rebuild`` builds the next one next to it, into tables of their own, and hands the database over
by writing a record here (``<db>.cdcapp_generation``, one row per hand-over, the newest wins):

- ``swapping``: the workers of every older generation exit at once (``SUPERSEDED_EXIT``) without
  writing another row; a worker that starts meanwhile waits.
- ``live``: the rebuilt tables are in place; a worker that starts joins that generation, as long
  as it runs the spec the generation was built for.

The record lives in the database it governs, so a rebuild's own workers, writing into their own
database, never see it.

The first worker to start on a database without a record writes one for its own generation: the
database then belongs to that pipeline (its app id, rebuilds included), and a worker of another
pipeline pointed at it by mistake refuses to start instead of mixing two pipelines' rows.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from cdcapp.clickhouse.client import Target, is_server, open_target, pipeline_database, string_literal
from cdcapp.clickhouse.ddl import quote
from cdcapp.config import Settings
from cdcapp.model.spec import Spec

log = logging.getLogger(__name__)

TABLE = "cdcapp_generation"
SWAPPING, LIVE = "swapping", "live"
#: a worker whose generation was superseded exits with this (EX_TEMPFAIL: run it again)
SUPERSEDED_EXIT = 75


#: the suffix ``cdcapp rebuild`` gives a generation's app id (``rebuild.plan``)
_REBUILT = re.compile(r"(-r\d{8}t\d{6})+$")


def pipeline_of(app_id: str) -> str:
    """The pipeline a generation belongs to: its app id without the rebuild suffixes."""
    return _REBUILT.sub("", app_id)


class GenerationError(RuntimeError):
    """A worker cannot join the database's generation (one line for the operator)."""


@dataclass(frozen=True)
class Generation:
    app_id: str
    internal_topic_prefix: str
    spec_hash: str
    state: str


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def record_ddl(db: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {quote(db)}.{quote(TABLE)} (seq UInt64, app_id String, "
            "internal_topic_prefix String, spec_hash String, state String) ENGINE = MergeTree ORDER BY seq")


def current(target: Target) -> Generation | None:
    """The newest record of the target's database, or None when no rebuild ever handed it over."""
    db = target.database
    exists = target.query(f"SELECT count() FROM system.tables WHERE database = {string_literal(db)} AND name = '{TABLE}'")
    if not exists[0][0]:
        return None
    rows = target.query(f"SELECT app_id, internal_topic_prefix, spec_hash, state FROM {quote(db)}.{quote(TABLE)} "
                        "ORDER BY seq DESC LIMIT 1")
    return Generation(*map(str, rows[0])) if rows else None


def read(settings: Settings, spec: Spec, claim: bool = False) -> Generation | None:
    """The newest record of the settings' database (None with chdb, which is never handed over);
    ``claim``: where there is none, first write one for the settings' own generation."""
    if not is_server(settings.resolved_clickhouse_url):
        return None
    target = open_target(settings.resolved_clickhouse_url, pipeline_database(settings, spec))
    try:
        found = current(target)
        if found is None and claim:
            target.execute(f"CREATE DATABASE IF NOT EXISTS {quote(target.database)}")
            write(target, Generation(settings.app_id, settings.internal_topic_prefix, spec_hash(spec), LIVE))
            found = current(target)
        return found
    finally:
        target.close()


def write(target: Target, generation: Generation) -> None:
    target.execute(record_ddl(target.database))
    values = ", ".join(string_literal(v) for v in (
        generation.app_id, generation.internal_topic_prefix, generation.spec_hash, generation.state))
    # INSERT ... SELECT: an INSERT with inline VALUES makes clickhouse-driver wait for a data block.
    target.execute(f"INSERT INTO {quote(target.database)}.{quote(TABLE)} SELECT {time.time_ns()}, {values}")


def applied(settings: Settings, spec: Spec, generation: Generation | None) -> Settings:
    """The settings of a worker of ``generation`` (the settings' own namespace when None), in the
    same database: pinned, since by default it derives from the app id, which changes."""
    if generation is None or generation.app_id == settings.app_id:
        return settings
    update: dict = {"app_id": generation.app_id, "internal_topic_prefix": generation.internal_topic_prefix,
                    "clickhouse_db": pipeline_database(settings, spec)}
    if settings.worker_dir is not None:
        # Another app id's RocksDB stores must not open the older generation's files.
        update["worker_dir"] = settings.worker_dir / generation.app_id
    return settings.model_copy(update=update)


def resolve(settings: Settings, spec: Spec, echo: Callable[[str], None] = log.info,
            sleep: Callable[[float], None] = time.sleep) -> Settings:
    """The settings a starting worker runs with: those of the database's live generation.

    Only a ClickHouse server can be handed over (chdb lives inside one worker's process). The
    record is read before anything else starts, so it waits for ClickHouse: a worker that guessed
    its generation could write an older spec's rows into rebuilt tables.
    """
    delay = 0.5
    while True:
        try:
            generation = read(settings, spec, claim=True)
        except Exception as exc:  # noqa: BLE001 - whatever the reason, the answer is needed first
            echo(f"reading the pipeline's generation from ClickHouse failed ({exc}); retrying in {delay:.1f} s")
        else:
            if generation is None or generation.state == LIVE:
                break
            echo(f"a rebuild is handing the database over to {generation.app_id}; waiting for it")
        sleep(delay)
        delay = min(delay * 2, 5.0)
    if generation is not None and pipeline_of(generation.app_id) != pipeline_of(settings.app_id):
        raise GenerationError(
            f"the ClickHouse database {pipeline_database(settings, spec)} belongs to pipeline "
            f"{pipeline_of(generation.app_id)}, and this worker's app id is {settings.app_id}: give each pipeline "
            "its own database (name none in CDCAPP_CLICKHOUSE_URL or CDCAPP_CLICKHOUSE_DB: it then derives from "
            "the app id)")
    if generation is not None and generation.app_id != settings.app_id and generation.spec_hash != spec_hash(spec):
        raise GenerationError(
            f"the ClickHouse database is written by generation {generation.app_id}, built for "
            f"another spec (hash {generation.spec_hash}, this worker's is {spec_hash(spec)}): run the worker "
            "with the spec given to `cdcapp rebuild`")
    if generation is not None and generation.app_id != settings.app_id:
        echo(f"joining generation {generation.app_id} (from cdcapp rebuild)")
    return applied(settings, spec, generation)


def live(settings: Settings, spec: Spec, echo: Callable[[str], None]) -> Settings:
    """The settings of the generation writing the database now, for the tools (one look, no wait;
    when ClickHouse does not answer, the settings as they are, with a word to ``echo``)."""
    try:
        return applied(settings, spec, read(settings, spec))
    except Exception as exc:  # noqa: BLE001 - the tool still works on the settings' own generation
        echo(f"ClickHouse did not say which generation is live ({exc}); using {settings.app_id}")
        return settings


def superseded(target: Target, app_id: str) -> Generation | None:
    """The record that hands the database to another generation than ``app_id``, if any."""
    generation = current(target)
    return generation if generation is not None and generation.app_id != app_id else None
