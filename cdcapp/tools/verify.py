"""The ground-truth check: ClickHouse's ``*_current`` views against the same join in the OLTP
database, row for row.

The OLTP side is computed by SQL generated from the spec (inner joins along each fact's
reference paths, measures as SQL arithmetic), independently of the stream code; both sides are
normalised to the canonical values of the ClickHouse column types before comparison.
"""

from __future__ import annotations

import ast
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from cdcapp.model.types import ColumnType
from cdcapp.config import Settings
from cdcapp.clickhouse.client import ClickHouseUrl, open_target, pipeline_database
from cdcapp.clickhouse.ddl import TableShape, table_shapes
from cdcapp.sources.connections import connect
from cdcapp.model.spec import Spec

Row = tuple[Any, ...]


@dataclass
class TableDiff:
    table: str
    expected_rows: int
    actual_rows: int
    missing: list[Row] = field(default_factory=list)  # in OLTP, not in ClickHouse
    unexpected: list[Row] = field(default_factory=list)  # in ClickHouse, not in OLTP
    different: list[tuple[Row, Row]] = field(default_factory=list)  # (OLTP, ClickHouse)
    keys: set[Row] = field(default_factory=set)  # the keys of all of those

    @property
    def equal(self) -> bool:
        return not (self.missing or self.unexpected or self.different)


@dataclass
class Report:
    source_id: str
    tables: list[TableDiff]
    #: no row that differed had differed in the attempt before: changes in flight while the sources are written
    in_flight_only: bool = False

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    @property
    def differences(self) -> set[tuple[str, Row]]:
        """(table, key) of every row that differs."""
        return {(t.table, key) for t in self.tables for key in t.keys}

    def render(self, limit: int = 10) -> str:
        lines = [f"{len(self.differences)} rows differed that had not in the attempt before: changes in flight"] \
            if self.in_flight_only else []
        for t in self.tables:
            verdict = "equal" if t.equal else "DIFFERENT"
            lines.append(f"{t.table}: {verdict} (OLTP {t.expected_rows} rows, ClickHouse {t.actual_rows} rows)")
            for row in t.missing[:limit]:
                lines.append(f"  missing in ClickHouse: {row}")
            for row in t.unexpected[:limit]:
                lines.append(f"  not in OLTP:           {row}")
            for expected, actual in t.different[:limit]:
                lines.append(f"  differs: OLTP       {expected}\n           ClickHouse {actual}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------- OLTP side
def _quote(name: str, dialect: str) -> str:
    return f"`{name}`" if dialect == "mariadb" else f'"{name}"'


def _table(spec: Spec, entity: str, dialect: str) -> str:
    """The entity's source table as the dialect names it, schema-qualified when the spec says so."""
    schema, table = spec.entities[entity].source_table(entity)
    # SQLite has one schema per file (capture installs its triggers on the main one).
    return (f"{_quote(schema, dialect)}." if schema and dialect != "sqlite" else "") + _quote(table, dialect)


def dimension_sql(spec: Spec, entity: str, dialect: str) -> str:
    columns = ", ".join(_quote(c, dialect) for c in spec.entities[entity].columns)
    return f"SELECT {columns} FROM {_table(spec, entity, dialect)}"


def fact_sql(spec: Spec, fact_index: int, dialect: str) -> str:
    fact = spec.facts[fact_index]
    q = lambda name: _quote(name, dialect)  # noqa: E731
    aliases: dict[tuple[str, ...], str] = {(): "t0"}
    joins: list[str] = []

    def alias_for(refs: list[str]) -> str:
        path: tuple[str, ...] = ()
        entity = fact.entity
        for ref_name in refs:
            parent_path = path
            path = (*path, ref_name)
            ref = spec.entities[entity].refs[ref_name]
            if path not in aliases:
                aliases[path] = f"t{len(aliases)}"
                parent_key = spec.entities[ref.entity].key
                on = " AND ".join(
                    f"{aliases[path]}.{q(pk)} = {aliases[parent_path]}.{q(fk)}" for pk, fk in zip(parent_key, ref.columns)
                )
                joins.append(f"JOIN {_table(spec, ref.entity, dialect)} {aliases[path]} ON {on}")
            entity = ref.entity
        return aliases[path]

    expressions = {}
    for name, path in fact.columns.items():
        refs, column, _ = spec.resolve_path(fact.entity, path)
        expressions[name] = f"{alias_for(refs)}.{q(column)}"
    for name, measure in fact.measures.items():
        expressions[name] = _measure_sql(measure.expr, expressions)
    select = ", ".join(expressions.values())
    return f"SELECT {select} FROM {_table(spec, fact.entity, dialect)} t0 " + " ".join(joins)


def _measure_sql(expr: str, columns: dict[str, str]) -> str:
    class Rewrite(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.copy_location(ast.Name(id=f"({columns[node.id]})", ctx=node.ctx), node)

    return ast.unparse(Rewrite().visit(ast.parse(expr, mode="eval")))


def _fetch_oltp(conn: Any, sql: str) -> list[Row]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        return [tuple(r) for r in cursor.fetchall()]
    finally:
        cursor.close()


# ------------------------------------------------------------------------------- ClickHouse side
class ClickHouseReader:
    """Reads ClickHouse directly, or through the worker's /sql/ view when an embedded chdb is
    owned by a running worker (one process per chdb directory)."""

    def __init__(self, settings: Settings, spec: Spec, worker_url: str | None = None) -> None:
        self.settings = settings
        self.spec = spec
        url = settings.resolved_clickhouse_url
        parsed = ClickHouseUrl.parse(url)
        self.database = pipeline_database(settings, spec)
        self.worker_url = worker_url
        if self.worker_url is None and parsed.scheme == "chdb":
            candidate = f"http://{settings.web_host}:{settings.web_port}"
            if _answers(candidate):
                self.worker_url = candidate
        self._target = None if self.worker_url else open_target(url, self.database)

    def query(self, sql: str) -> list[list[Any]]:
        if self._target is not None:
            return self._target.query(sql)
        url = f"{self.worker_url}/sql/?" + urllib.parse.urlencode({"q": sql})
        headers = {"Authorization": f"Bearer {self.settings.web_token}"} if self.settings.web_token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
                return orjson.loads(response.read())["data"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"worker query failed: {exc.read().decode(errors='replace')}") from None

    def close(self) -> None:
        if self._target is not None:
            self._target.close()


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/status/", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


# ------------------------------------------------------------------------------- comparison
def _normaliser(types: list[ColumnType]) -> Callable[[Row], Row]:
    def normalise(row: Row) -> Row:
        # The OLTP side computes measures in SQL (SQLite in floats): rounded as the pipeline does.
        return tuple(t.computed(v) for t, v in zip(types, row))

    return normalise


def compare(shape: TableShape, expected: list[Row], actual: list[Row]) -> TableDiff:
    """Rows are in ``shape.data_columns`` order on both sides."""
    normalise = _normaliser([shape.columns[c] for c in shape.data_columns])
    positions = [shape.data_columns.index(c) for c in shape.key if c != "_source"]
    key_of = lambda row: tuple(row[i] for i in positions)  # noqa: E731
    want = {key_of(r): r for r in map(normalise, expected)}
    have: dict[Row, Row] = {}
    diff = TableDiff(shape.name, len(want), len(actual))
    for row in map(normalise, actual):
        if key_of(row) in have:  # FINAL must never show a key twice
            diff.unexpected.append(row)
            diff.keys.add(key_of(row))
        have[key_of(row)] = row
    for key in sorted(want.keys() - have.keys()):
        diff.missing.append(want[key])
        diff.keys.add(key)
    for key in sorted(have.keys() - want.keys()):
        diff.unexpected.append(have[key])
        diff.keys.add(key)
    for key in sorted(want.keys() & have.keys()):
        if want[key] != have[key]:
            diff.different.append((want[key], have[key]))
            diff.keys.add(key)
    return diff


def verify_once(settings: Settings, spec: Spec, kind: str, source_id: str, sqlite_path: Path | None,
                reader: ClickHouseReader) -> Report:
    shapes = table_shapes(spec)
    conn = connect(kind, settings, sqlite_path)  # type: ignore[arg-type]
    try:
        tables = []
        for dim in spec.dimensions:
            shape = shapes[dim.table]
            expected = _fetch_oltp(conn, dimension_sql(spec, dim.entity, kind))
            actual = _fetch_current(reader, shape, source_id)
            tables.append(compare(shape, expected, actual))
        for index, fact in enumerate(spec.facts):
            shape = shapes[fact.table]
            expected = _fetch_oltp(conn, fact_sql(spec, index, kind))
            actual = _fetch_current(reader, shape, source_id)
            tables.append(compare(shape, expected, actual))
    finally:
        conn.close()
    return Report(source_id, tables)


def _fetch_current(reader: ClickHouseReader, shape: TableShape, source_id: str) -> list[Row]:
    columns = ", ".join(f"`{c}`" for c in shape.data_columns)
    source = source_id.replace("\\", "\\\\").replace("'", "\\'")
    sql = f"SELECT {columns} FROM {reader.database}.{shape.current_view} WHERE _source = '{source}'"
    return [tuple(r) for r in reader.query(sql)]


def in_flight_only(previous: Report | None, report: Report) -> bool:
    """Whether every row that differs now did not differ in the attempt before."""
    return previous is not None and not report.equal and not report.differences & previous.differences


def verify(settings: Settings, spec: Spec, kind: str, source_id: str | None = None, sqlite_path: Path | None = None,
           wait_s: float = 0.0, worker_url: str | None = None, on_attempt: Callable[[Report], None] | None = None,
           live: bool = False) -> Report:
    """Compare once, or keep comparing until equal or ``wait_s`` has passed (a pipeline settling).

    ``live``: the sources are being written meanwhile, so an attempt is rarely equal: rows change
    between the read of the source and that of ClickHouse. It is accepted once no difference of an
    attempt is still there, unchanged, in the next one (``Report.in_flight_only``). A row the
    pipeline got wrong stays wrong, and shows in every attempt.
    """
    reader = ClickHouseReader(settings, spec, worker_url)
    deadline = time.monotonic() + wait_s
    previous: Report | None = None
    try:
        while True:
            try:
                report = verify_once(settings, spec, kind, source_id or kind, sqlite_path, reader)
            except Exception:
                # While settling, ClickHouse may not have the database yet (a worker creates it
                # when it starts); only the last attempt's error is the answer.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
                continue
            if on_attempt:
                on_attempt(report)
            report.in_flight_only = live and in_flight_only(previous, report)
            if report.equal or report.in_flight_only or time.monotonic() >= deadline:
                return report
            previous = report
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    finally:
        reader.close()
