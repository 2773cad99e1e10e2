"""A random but valid workload for any pipeline spec (``cdcapp generate --spec PATH``).

The spec names each entity's table, key, typed columns and references, which is all it takes
to write to the sources the way an application would. Each operation is one transaction: a row
inserted (with a new parent row first where a reference has none to point at), one to three of
a row's plain columns set to values that differ from the stored ones, a row's reference moved
to another live parent, or a row deleted together with every row that references it, deepest
first (the foreign keys are plain, as in the e-commerce schema: InnoDB's cascades never reach
the binlog). ``create_tables`` declares those foreign keys, so the database itself checks that
every reference stays valid.

Values fit their types exactly; integer key columns count up from the largest stored value,
other key values are random and checked against the live keys, which ``load`` reads from the
database: it runs on existing data, and what another writer changed in between shows up as the
integrity errors after which ``run_workload`` reloads. The rate counts rows as the e-commerce
workload does, and so do the row counts: updates never write a value that is already stored.

Same seed, same clock, fresh database: same final database.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from graphlib import TopologicalSorter
from typing import Any

from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType
from cdcapp.tools.workload import Dialect, IdPool, _Sql

WEIGHTS = {"insert": 45, "update": 35, "move": 10, "delete": 10}
#: a delete takes at most this many rows with it; a row with a larger family is left alone
MAX_CASCADE = 25
#: deletes leave an entity at least this many rows, so that the tables never run dry
MIN_ROWS = 10
#: how often an insert gives its row a new parent instead of a live one
NEW_PARENT = 0.1
# SQLite's INTEGER and Debezium's default bigint.unsigned.handling.mode=long both stop at the
# signed 64-bit range: a UInt64 above it would not come back exactly.
_INT64 = (-(1 << 63), (1 << 63) - 1)
# Debezium sends a DATETIME as epoch milliseconds, which the schemaless decoder tells from epoch
# seconds by magnitude (cdcapp.debezium.connect): instants before 10**11 ms would be misread.
_FIRST_INSTANT = datetime(1973, 3, 4)
_INSTANTS = int((datetime(2106, 1, 1) - _FIRST_INSTANT).total_seconds())
_FIRST_DAY = date(1970, 1, 1)
_DAYS = (date(2106, 1, 1) - _FIRST_DAY).days
# Some non-ASCII (accents, other scripts, a 4-byte emoji) and a quote, in valid UTF-8; no edge
# spaces, which MariaDB's PAD SPACE collations would compare away.
WORDS = ("alpha", "Bravo", "charlie", "delta", "echo", "O'Brien", "café", "Zürich", "Kraków", "naïve", "São Paulo",
         "İstanbul", "Straße", "Ωμέγα", "Привет", "東京", "서울", "🙂 ok")
_DIALECTS = ("sqlite", "postgres", "mariadb")
#: ClickHouse type -> the source type of each dialect. PostgreSQL has no unsigned types: the next
#: wider signed one holds them. SQLite keeps a timestamp as text; its declared type TIMESTAMP tells
#: schema sync it is a DateTime (cdcapp.model.sourcetypes).
_SOURCE_TYPES = {
    "Int8": ("INTEGER", "SMALLINT", "TINYINT"), "UInt8": ("INTEGER", "SMALLINT", "TINYINT UNSIGNED"),
    "Int16": ("INTEGER", "SMALLINT", "SMALLINT"), "UInt16": ("INTEGER", "INTEGER", "SMALLINT UNSIGNED"),
    "Int32": ("INTEGER", "INTEGER", "INT"), "UInt32": ("INTEGER", "BIGINT", "INT UNSIGNED"),
    "Int64": ("INTEGER", "BIGINT", "BIGINT"), "UInt64": ("INTEGER", "NUMERIC(20, 0)", "BIGINT UNSIGNED"),
    "Float32": ("REAL", "REAL", "FLOAT"), "Float64": ("REAL", "DOUBLE PRECISION", "DOUBLE"),
    "DateTime": ("TIMESTAMP", "TIMESTAMP(0) WITHOUT TIME ZONE", "DATETIME"), "Date": ("DATE", "DATE", "DATE"),
    "String": ("TEXT", "TEXT", "TEXT"),
}
_DECIMAL = {"postgres": "NUMERIC", "mariadb": "DECIMAL"}


class WorkloadError(RuntimeError):
    """Source tables the spec's workload cannot run on, said in one line."""


class _Skip(Exception):
    """The operation cannot be done as drawn (too many rows, no free key): it is rolled back."""


def quote(dialect: Dialect, name: str) -> str:
    mark = "`" if dialect == "mariadb" else '"'
    return mark + name.replace(mark, mark * 2) + mark


def source_table(spec: Spec, entity: str, dialect: Dialect) -> str:
    """The entity's table, quoted; SQLite has one schema, so it takes the table name alone."""
    schema, table = spec.entities[entity].source_table(entity)
    if schema is None or dialect == "sqlite":
        return quote(dialect, table)
    return f"{quote(dialect, schema)}.{quote(dialect, table)}"


def parents_first(spec: Spec) -> list[str]:
    # The spec refuses a cycle of references, so there always is such an order.
    graph = {name: [ref.entity for ref in entity.refs.values()] for name, entity in spec.entities.items()}
    return list(TopologicalSorter(graph).static_order())


def _int_range(t: ColumnType) -> tuple[int, int]:
    return max(t.low, _INT64[0]), min(t.high, _INT64[1])


def sql_type(dialect: Dialect, t: ColumnType, indexed: bool) -> str:
    """The source type that holds exactly the values of ``t``, as the pipeline reads them back."""
    if t.kind == "decimal":
        # SQLite's NUMERIC affinity would turn a decimal into a REAL: TEXT keeps it exact.
        return "TEXT" if dialect == "sqlite" else f"{_DECIMAL[dialect]}({t.precision}, {t.scale})"
    if t.kind == "str" and indexed and dialect == "mariadb":
        return "VARCHAR(255)"  # MariaDB indexes no TEXT without a prefix length
    return _SOURCE_TYPES[t.name][_DIALECTS.index(dialect)]


def table_ddl(spec: Spec, dialect: Dialect) -> list[str]:
    """The statements that create the spec's schemas and tables where missing, parents first."""
    q = lambda name: quote(dialect, name)  # noqa: E731
    columns = lambda names: ", ".join(map(q, names))  # noqa: E731
    schemas = sorted({s for n, e in spec.entities.items() if (s := e.source_table(n)[0])})
    statements = {"postgres": [f"CREATE SCHEMA IF NOT EXISTS {q(s)}" for s in schemas],
                  "mariadb": [f"CREATE DATABASE IF NOT EXISTS {q(s)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                              for s in schemas]}.get(dialect, [])
    for name in parents_first(spec):
        entity, table = spec.entities[name], source_table(spec, name, dialect)
        indexed = set(entity.key).union(*(ref.columns for ref in entity.refs.values()))
        lines = [f"{q(c)} {sql_type(dialect, t, c in indexed)} NOT NULL" for c, t in spec.column_types(name).items()]
        lines.append(f"PRIMARY KEY ({columns(entity.key)})")
        lines += [f"FOREIGN KEY ({columns(ref.columns)}) REFERENCES {source_table(spec, ref.entity, dialect)} "
                  f"({columns(spec.entities[ref.entity].key)})" for ref in entity.refs.values()]
        # utf8mb4_bin: keys compare as the pipeline compares them, byte for byte, not case-blind.
        tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin" if dialect == "mariadb" else ""
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(lines) + f"\n){tail}")
        if dialect == "mariadb":
            continue  # InnoDB indexes the columns of a foreign key itself
        # Without an index, every delete of a parent scans the child table.
        for ref_name, ref in entity.refs.items():
            if ref.columns != entity.key[:len(ref.columns)]:
                index = q(f"{entity.source_table(name)[1]}_{ref_name}_fk")
                statements.append(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({columns(ref.columns)})")
    return statements


def create_tables(spec: Spec, dialect: Dialect, conn: Any) -> None:
    """Create the spec's source tables where missing (``table_ddl``)."""
    cur = conn.cursor()
    try:
        for statement in table_ddl(spec, dialect):
            try:
                cur.execute(statement)
            except Exception as exc:  # whatever the driver, the statement refused and why, in one line
                what = statement.splitlines()[0].removesuffix(" (")
                raise WorkloadError(f"{dialect}: {what}: {str(exc).splitlines()[0]}") from None
    finally:
        cur.close()
    conn.commit()


def check_tables(spec: Spec, dialect: Dialect, conn: Any) -> None:
    """Raise ``WorkloadError`` naming every table the spec's workload needs and the source lacks,
    and every column missing from a table that is there."""
    db = _Sql(conn, dialect)
    problems = []
    for name, entity in spec.entities.items():
        schema, table = entity.source_table(name)
        if dialect == "sqlite":
            found = {row[1] for row in db.fetchall(f"PRAGMA table_info({quote(dialect, table)})")}
        else:
            default = "current_schema()" if dialect == "postgres" else "DATABASE()"
            found = {row[0] for row in db.fetchall(
                f"SELECT column_name FROM information_schema.columns WHERE table_schema = coalesce(%s, {default}) "
                "AND table_name = %s", schema, table)}
        missing = [c for c in entity.columns if c not in found]
        if not found:
            problems.append(f"no table {source_table(spec, name, dialect)}")
        elif missing:
            problems.append(f"{source_table(spec, name, dialect)} has no column {', '.join(missing)}")
    conn.commit()
    if problems:
        raise WorkloadError(f"{dialect}: {'; '.join(problems)} (--create creates the spec's tables)")


def _param(t: ColumnType, value: Any) -> Any:
    """A canonical value (``ColumnType.canonical``) as the drivers write it."""
    if t.kind == "decimal":
        return Decimal(value)
    if t.kind == "datetime":
        return datetime.fromisoformat(value)
    if t.kind == "date":
        return date.fromisoformat(value)
    return value


class SpecWorkload:
    """The operations ``run_workload`` paces: ``SpecWorkload(spec, ...)`` with its other arguments
    those of a ``cdcapp.tools.workload.WorkloadFactory`` (``functools.partial(SpecWorkload, spec)``)."""

    def __init__(self, spec: Spec, conn: Any, dialect: Dialect, rng: random.Random,
                 now: Callable[[], datetime]) -> None:
        self.spec, self.conn, self.rng, self.now = spec, conn, rng, now
        self.dialect = dialect
        self.db = _Sql(conn, dialect)
        self.order = parents_first(spec)
        self.types = {name: spec.column_types(name) for name in spec.entities}
        self.tables = {name: source_table(spec, name, dialect) for name in spec.entities}
        self.plain: dict[str, list[str]] = {}
        self.movable: dict[str, list[str]] = {}
        self.generated: dict[str, list[str]] = {}
        for name, entity in spec.entities.items():
            in_refs = Counter(c for ref in entity.refs.values() for c in ref.columns)
            self.plain[name] = [c for c in entity.columns if c not in entity.key and c not in in_refs]
            self.generated[name] = [c for c in entity.key if c not in in_refs]
            # A reference that is part of the key, or shares a column with another one, stays put.
            self.movable[name] = [r for r, ref in entity.refs.items()
                                  if all(c not in entity.key and in_refs[c] == 1 for c in ref.columns)]
        self.eligible = {"insert": self.order, "update": [n for n in self.order if self.plain[n]],
                         "move": [n for n in self.order if self.movable[n]], "delete": self.order}
        self.kinds = [kind for kind in WEIGHTS if self.eligible[kind]]
        self.weights = [WEIGHTS[kind] for kind in self.kinds]
        self.live: dict[str, IdPool] = {}
        self.next: dict[tuple[str, str], int] = {}
        self._rows: Counter[str] = Counter()
        self._born: list[tuple[str, tuple[Any, ...]]] = []
        self._dead: list[tuple[str, tuple[Any, ...]]] = []

    # --- SQL ----------------------------------------------------------------------------

    def _columns(self, names: Iterable[str]) -> str:
        return ", ".join(quote(self.dialect, c) for c in names)

    def _pairs(self, columns: Iterable[str], sep: str = " AND ") -> str:
        return sep.join(f"{quote(self.dialect, c)} = %s" for c in columns)

    def _params(self, entity: str, columns: Iterable[str], values: Iterable[Any]) -> list[Any]:
        return [_param(self.types[entity][c], v) for c, v in zip(columns, values, strict=True)]

    def _canonical(self, entity: str, columns: Iterable[str], row: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(self.types[entity][c].canonical(v) for c, v in zip(columns, row, strict=True))

    def _select(self, entity: str, columns: list[str], match: dict[str, Any], limit: int | None = None
                ) -> list[tuple[Any, ...]]:
        """Rows of ``columns`` (canonical) of the entity's rows whose ``match`` columns hold those values."""
        sql = (f"SELECT {self._columns(columns)} FROM {self.tables[entity]} WHERE {self._pairs(match)} "
               f"ORDER BY {self._columns(self.spec.entities[entity].key)}" + (f" LIMIT {limit}" if limit else ""))
        rows = self.db.fetchall(sql, *self._params(entity, match, match.values()))
        return [self._canonical(entity, columns, row) for row in rows]

    # --- the live keys ------------------------------------------------------------------

    def load(self) -> None:
        """(Re)read the live keys, and where integer keys go on, from the database."""
        for name in self.order:
            key = self.spec.entities[name].key
            pool = self.live[name] = IdPool()
            for row in self.db.fetchall(f"SELECT {self._columns(key)} FROM {self.tables[name]} "
                                        f"ORDER BY {self._columns(key)}"):
                pool.add(self._canonical(name, key, row))
            for column in self.generated[name]:
                if self.types[name][column].kind == "int":
                    top = self.db.fetchall(f"SELECT max({quote(self.dialect, column)}) FROM {self.tables[name]}")[0][0]
                    self.next[name, column] = int(top) + 1 if top is not None else 1
        self.conn.commit()

    def _is_live(self, entity: str, key: tuple[Any, ...]) -> bool:
        return key in self.live[entity] or (entity, key) in self._born

    # --- one transaction ----------------------------------------------------------------

    def step(self, budget: int) -> tuple[str, Counter[str]]:
        """One operation of at most ``budget`` row changes: its kind (``entity.insert|update|move|
        delete``) and its row changes per "entity.insert|update|delete" (empty: nothing done)."""
        kind = self.rng.choices(self.kinds, self.weights)[0]
        entity = self.rng.choice(self.eligible[kind])
        self._rows, self._born, self._dead = Counter(), [], []
        self.db.begin()
        try:
            {"insert": self._insert, "update": self._update, "move": self._move, "delete": self._delete}[kind](entity)
            if sum(self._rows.values()) > budget:
                raise _Skip
        except _Skip:
            self.conn.rollback()
            return kind, Counter()
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()
        for name, key in self._dead:
            self.live[name].discard(key)
        for name, key in self._born:
            self.live[name].add(key)
        return f"{entity}.{kind}", self._rows

    def _insert(self, name: str, preset: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """Insert a row of ``name`` with the ``preset`` values: its key."""
        entity = self.spec.entities[name]
        for attempt in range(3):
            row = dict(preset or {})
            for ref in entity.refs.values():
                parent_key = self.spec.entities[ref.entity].key
                fixed = {p: row[c] for c, p in zip(ref.columns, parent_key) if c in row}
                if len(fixed) < len(parent_key):
                    # The last attempt takes a new parent: the key it gives is free for sure.
                    row.update(zip(ref.columns, self._parent(ref.entity, fixed, fresh=attempt == 2)))
                elif not self._is_live(ref.entity, tuple(fixed[p] for p in parent_key)):
                    raise _Skip  # the preset values name no live parent here
            for column in self.generated[name]:
                if column not in row:
                    row[column] = self._key_value(name, column)
            key = tuple(row[c] for c in entity.key)
            if not self._is_live(name, key):
                break
        else:
            raise _Skip
        for column, t in self.types[name].items():
            if column not in row:
                row[column] = self._value(t)
        marks = ", ".join(["%s"] * len(row))
        self.db.execute(f"INSERT INTO {self.tables[name]} ({self._columns(row)}) VALUES ({marks})",
                        *self._params(name, row, row.values())).close()
        self._rows[f"{name}.insert"] += 1
        self._born.append((name, key))
        return key

    def _parent(self, name: str, fixed: dict[str, Any], fresh: bool) -> tuple[Any, ...]:
        """The key of a live row of ``name`` whose key holds the ``fixed`` values, else of a new one."""
        if not fresh and self.rng.random() >= NEW_PARENT:
            if fixed:
                found = self._select(name, self.spec.entities[name].key, fixed, limit=20)
                if found:
                    return self.rng.choice(found)
            elif (key := self.live[name].choice(self.rng)) is not None:
                return key
        return self._insert(name, fixed)

    def _key_value(self, name: str, column: str) -> Any:
        t = self.types[name][column]
        if t.kind == "str":
            return f"{self.rng.choice(WORDS)}-{self.rng.getrandbits(48):012x}"
        if t.kind != "int":
            return self._value(t)
        low, high = _int_range(t)
        value = self.next.get((name, column), 1)
        if not low <= value <= high:
            return self.rng.randint(low, high)  # a small type's top is taken: a random one, checked
        self.next[name, column] = value + 1
        return value

    def _value(self, t: ColumnType) -> Any:
        """A random canonical value of ``t``: everyday ones mostly, the extremes now and then."""
        rng = self.rng
        if t.kind == "int":
            low, high = _int_range(t)
            pick = rng.random()
            if pick < 0.1:
                return rng.choice((low, high))
            return rng.randint(max(low, 0), min(high, 1000)) if pick < 0.8 else rng.randint(low, high)
        if t.kind == "str":
            return " ".join(rng.choices(WORDS, k=rng.randint(1, 4))) + f" {rng.randint(0, 999)}"
        if t.kind == "decimal":
            unscaled = rng.randrange(10 ** rng.randint(1, t.precision))
            return t.canonical(Decimal(f"{rng.choice('+-')}{unscaled}E-{t.scale}"))
        if t.kind == "datetime":
            when = self.now() if rng.random() < 0.5 else _FIRST_INSTANT + timedelta(seconds=rng.randrange(_INSTANTS))
            return t.canonical(when)
        if t.kind == "date":
            return t.canonical(_FIRST_DAY + timedelta(days=rng.randrange(_DAYS)))
        # Binary fractions with six digits at most: exact in a float32, and read back exactly by
        # every source (MariaDB prints a FLOAT with six significant digits).
        return rng.randint(-9999, 9999) / 4 if t.name == "Float32" else rng.randint(-10**12, 10**12) / 1024

    # --- operations ---------------------------------------------------------------------

    def _update(self, name: str) -> None:
        key = self.live[name].choice(self.rng)
        if key is None:
            return
        columns = self.rng.sample(self.plain[name], self.rng.randint(1, min(3, len(self.plain[name]))))
        found = self._select(name, columns, dict(zip(self.spec.entities[name].key, key)))
        if not found:
            return  # another writer deleted it
        new = {}
        for column, old in zip(columns, found[0]):
            for _ in range(5):  # a small type may draw the stored value again
                value = self._value(self.types[name][column])
                if value != old:
                    new[column] = value
                    break
        self._set(name, key, new)

    def _move(self, name: str) -> None:
        key = self.live[name].choice(self.rng)
        ref = self.spec.entities[name].refs[self.rng.choice(self.movable[name])]
        if key is None or not (found := self._select(name, ref.columns, dict(zip(self.spec.entities[name].key, key)))):
            return
        target = self.live[ref.entity].choice(self.rng)
        if target is not None and target != found[0]:
            self._set(name, key, dict(zip(ref.columns, target)))

    def _set(self, name: str, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        if not values:
            return
        key_columns = self.spec.entities[name].key
        self._rows[f"{name}.update"] += self.db.rowcount(
            f"UPDATE {self.tables[name]} SET {self._pairs(values, ', ')} WHERE {self._pairs(key_columns)}",
            *self._params(name, values, values.values()), *self._params(name, key_columns, key))

    def _delete(self, name: str) -> None:
        if len(self.live[name]) < MIN_ROWS:
            return
        doomed: dict[tuple[str, tuple[Any, ...]], None] = {}
        self._family(name, self.live[name].choice(self.rng), doomed)
        for entity, key in doomed:
            key_columns = self.spec.entities[entity].key
            self._rows[f"{entity}.delete"] += self.db.rowcount(
                f"DELETE FROM {self.tables[entity]} WHERE {self._pairs(key_columns)}",
                *self._params(entity, key_columns, key))
            self._dead.append((entity, key))

    def _family(self, name: str, key: tuple[Any, ...], doomed: dict[tuple[str, tuple[Any, ...]], None]) -> None:
        """Add the rows that reference the row ``key`` of ``name``, recursively, then the row itself:
        an order to delete them in, children first."""
        if (name, key) in doomed:
            return
        for child, ref_name in self.spec.children[name]:
            child_key = self.spec.entities[child].key
            match = dict(zip(self.spec.entities[child].refs[ref_name].columns, key))
            for row in self._select(child, child_key, match, limit=MAX_CASCADE + 1):
                self._family(child, row, doomed)
        doomed[name, key] = None
        if len(doomed) > MAX_CASCADE:
            raise _Skip
