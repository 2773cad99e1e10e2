"""The only ClickHouse client of the project: a server through clickhouse-driver, or chdb.

Both targets are synchronous. ``open_target`` serves synchronous callers (verify, the demo);
``ClickHouse`` runs one target on a dedicated thread for the event loop (the sink, the web views).
"""

from __future__ import annotations

import re
import struct

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote as url_quote
from urllib.parse import unquote, urlparse

import orjson

from cdcapp.clickhouse import readonly
from cdcapp.clickhouse.ddl import TableShape, ddl, quote
from cdcapp.config import Settings
from cdcapp.model.spec import Spec
from cdcapp.threads import DedicatedThread

T = TypeVar("T")


class Target(Protocol):
    database: str

    def execute(self, sql: str) -> None: ...

    def insert(self, shape: TableShape, rows: list[dict[str, Any]]) -> None: ...

    def query(self, sql: str) -> list[list[Any]]: ...

    def read(self, sql: str) -> list[list[Any]]:
        """A statement of the SQL endpoint (``readonly.check``), with the pipeline's database current."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ClickHouseUrl:
    scheme: str  # clickhouse | chdb
    host: str = ""
    port: int = 9000
    user: str = "default"
    password: str = ""
    database: str = ""
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> "ClickHouseUrl":
        parsed = urlparse(url)
        if parsed.scheme == "chdb":
            path = unquote(parsed.netloc + parsed.path)
            if not path:
                raise ValueError(f"chdb URL needs a directory: chdb:///path/to/dir (got {url!r})")
            return cls("chdb", path=path)
        if parsed.scheme == "clickhouse":
            return cls(
                "clickhouse",
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or 9000,
                user=unquote(parsed.username or "default"),
                password=unquote(parsed.password or ""),
                database=parsed.path.lstrip("/"),
            )
        raise ValueError(f"unsupported ClickHouse URL {url!r}: use clickhouse://user:pass@host:port/db or chdb:///dir")

    def with_database(self, database: str) -> str:
        """This server's URL for another database."""
        auth = url_quote(self.user, safe="") + (":" + url_quote(self.password, safe="") if self.password else "")
        return f"clickhouse://{auth}@{self.host}:{self.port}/{url_quote(database, safe='')}"

    def redacted(self) -> str:
        if self.scheme == "chdb":
            return f"chdb://{self.path}"
        return f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"


class DriverTarget:
    """A ClickHouse server over the native protocol (columnar inserts)."""

    def __init__(self, url: ClickHouseUrl, database: str) -> None:
        self.database = url.database or database
        self._url = url
        self._client = _driver_client(url)
        self._reader: Any = None

    def execute(self, sql: str) -> None:
        self._client.execute(sql)

    def insert(self, shape: TableShape, rows: list[dict[str, Any]]) -> None:
        names = list(shape.columns)
        columns = []
        for name, column_type in shape.columns.items():
            values = [row[name] for row in rows]
            convert = _DRIVER_VALUE.get(column_type.kind)
            columns.append(values if convert is None else [convert(v) for v in values])
        quoted = ", ".join(quote(n) for n in names)
        self._client.execute(f"INSERT INTO {quote(self.database)}.{quote(shape.name)} ({quoted}) VALUES", columns,
                             columnar=True)

    def insert_columns(self, table: str, names: list[str], columns: list[list[Any]]) -> None:
        """Values already in the driver's types, column by column (the benchmark's raw copy)."""
        quoted = ", ".join(f"`{n}`" for n in names)
        self._client.execute(f"INSERT INTO {self.database}.{table} ({quoted}) VALUES", columns, columnar=True)

    def query(self, sql: str) -> list[list[Any]]:
        return [list(row) for row in self._client.execute(sql)]

    def read(self, sql: str) -> list[list[Any]]:
        if self._reader is None:
            # A client of its own: the pipeline's database is current on every connection it
            # opens, and the server refuses it any write or settings change.
            self._reader = _driver_client(self._url, database=self.database, readonly=1)
        return [list(row) for row in self._reader.execute(sql)]

    def close(self) -> None:
        self._client.disconnect()
        if self._reader is not None:
            self._reader.disconnect()


def _driver_client(url: ClickHouseUrl, database: str = "default", **settings: Any) -> Any:
    from clickhouse_driver import Client

    return Client(host=url.host, port=url.port, user=url.user, password=url.password, database=database,
                  connect_timeout=5, send_receive_timeout=60, settings={"use_numpy": False, **settings})


@lru_cache(maxsize=1 << 16)
def _epoch_seconds(value: str) -> int:
    # The driver reads a naive datetime in the worker's local time zone; an int is taken as is.
    return int(datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp())


@lru_cache(maxsize=1 << 14)
def _date(value: str) -> date:
    return date.fromisoformat(value)


#: canonical value -> what clickhouse-driver takes, for the kinds it does not take as they are
#: (a canonical Decimal string is fine: the driver reads ``Decimal(str(value))``).
_DRIVER_VALUE: dict[str, Callable[[Any], Any]] = {"datetime": _epoch_seconds, "date": _date}


class ChdbTarget:
    """The embedded engine: one process owns the directory, so only one worker can use it."""

    def __init__(self, url: ClickHouseUrl, database: str) -> None:
        from chdb import session

        Path(url.path).mkdir(parents=True, exist_ok=True)
        self.database = database
        self._session = session.Session(url.path)
        # Decimals as JSON strings keep their exact digits on the way out.
        self._session.query("SET output_format_json_quote_decimals = 1")

    def execute(self, sql: str) -> None:
        self._session.query(sql)

    def insert(self, shape: TableShape, rows: list[dict[str, Any]]) -> None:
        # Canonical rows are already what JSONEachRow parses, so they go in without conversion.
        body = b"\n".join(orjson.dumps({name: row[name] for name in shape.columns}) for row in rows)
        self._session.query(f"INSERT INTO {quote(self.database)}.{quote(shape.name)} FORMAT JSONEachRow\n{body.decode()}")

    def query(self, sql: str) -> list[list[Any]]:
        result = self._session.query(sql, "JSONCompact")
        raw = result.bytes()
        return orjson.loads(raw)["data"] if raw else []

    def read(self, sql: str) -> list[list[Any]]:
        # One session serves the sink too, and it names every table in full: making the pipeline's
        # database current changes nothing for it. (chdb's session cannot be made read-only alone.)
        self._session.query(f"USE {self.database}")
        return self.query(sql)

    def close(self) -> None:
        self._session.close()


def is_server(url: str) -> bool:
    """Whether the URL names a ClickHouse server (else chdb, inside one process)."""
    return ClickHouseUrl.parse(url).scheme == "clickhouse"


def open_target(url: str, database: str) -> Target:
    parsed = ClickHouseUrl.parse(url)
    if parsed.scheme == "chdb":
        return ChdbTarget(parsed, database)
    return DriverTarget(parsed, database)


def table_columns(target: Target, table: str) -> dict[str, str]:
    """Column -> ClickHouse type name of a table of the pipeline's database, in table order."""
    rows = target.query(
        f"SELECT name, type FROM system.columns WHERE database = {string_literal(target.database)} "
        f"AND table = {string_literal(table)}")
    return {str(name): str(type_name) for name, type_name in rows}


def rows_per_table(target: Target) -> dict[str, int]:
    """Rows stored per table of the target's database, from the parts' metadata (no table scan)."""
    return {str(t): int(n) for t, n in target.query(
        f"SELECT table, sum(rows) FROM system.parts WHERE database = {string_literal(target.database)} AND active "
        "GROUP BY table")}


def string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: "this column exists already": another worker added it first (18.16 says 44, newer servers 15)
DUPLICATE_COLUMN_CODES = frozenset({15, 44})


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, RuntimeError):
        match = _CODE.search(str(exc))
        code = int(match.group(1)) if match else None
    return code if isinstance(code, int) else None


def pipeline_database(settings: Settings, spec: Spec) -> str:
    """Where a pipeline's tables are: the database its ClickHouse server URL names, else
    ``Settings.database`` (CDCAPP_CLICKHOUSE_DB, the spec's, else one named after the app id)."""
    url = ClickHouseUrl.parse(settings.resolved_clickhouse_url)
    return (url.database if url.scheme == "clickhouse" else "") or settings.database(spec.database)


def create_tables(target: Target, spec: Spec) -> None:
    """The spec's tables and ``*_current`` views, created where missing."""
    for statement in ddl(spec, target.database):
        target.execute(statement)


#: ClickHouse error codes that refuse the data itself: parse and conversion failures, values out
#: of a type's range, NULL into a non-Nullable column. Anything else (unavailable, too many parts,
#: a missing table or column) is retried.
DATA_ERROR_CODES = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 407, 469})
_CODE = re.compile(r"Code: (\d+)")


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised by an insert, refuses the rows themselves (retrying cannot help).

    The server answers with a coded exception (clickhouse-driver's ``ServerException.code``; chdb
    raises a RuntimeError whose text starts "Code: 27. DB::Exception: ..."). clickhouse-driver also refuses values it
    cannot write to a column before anything is sent (``struct.error``, ``OverflowError``,
    ``TypeError``, ``ValueError``, its ``TypeMismatchError``); its network errors are ``OSError``,
    ``EOFError`` or its ``NetworkError``, none of which is a data error.
    """
    code = error_code(exc)
    if code is not None:
        return code in DATA_ERROR_CODES
    return isinstance(exc, (struct.error, OverflowError, TypeError, ValueError))


class ClickHouse:
    """One target on one dedicated thread, for use from the event loop; tables created on connect."""

    is_data_error = staticmethod(is_data_error)

    def __init__(self, url: str, spec: Spec, database: str) -> None:
        self.url = url
        self.spec = spec
        parsed = ClickHouseUrl.parse(url)
        #: the database the tables are in: the URL's, else ``database`` (as the targets choose it)
        self.database = (parsed.database if parsed.scheme == "clickhouse" else "") or database
        self._thread = DedicatedThread("clickhouse")
        self._target: Target | None = None

    def _connected(self) -> Target:
        if self._target is None:
            target = open_target(self.url, self.database)
            try:
                create_tables(target, self.spec)
            except Exception:
                target.close()
                raise
            self._target = target
        return self._target

    def _insert(self, batches: list[tuple[TableShape, list[dict[str, Any]]]]) -> None:
        target = self._connected()
        try:
            for shape, rows in batches:
                target.insert(shape, rows)
        except Exception:
            # A broken connection is not reused: the retry opens a fresh one.
            self._reset()
            raise

    def _reset(self) -> None:
        if self._target is not None:
            try:
                self._target.close()
            except Exception:  # noqa: BLE001 - closing a broken client may fail too; it is dropped either way
                pass
            self._target = None

    async def connect(self) -> None:
        await self._thread.call(self._connected)

    async def insert(self, batches: list[tuple[TableShape, list[dict[str, Any]]]]) -> None:
        await self._thread.call(self._insert, batches)

    async def query(self, sql: str) -> list[list[Any]]:
        return await self._thread.call(lambda: self._connected().query(sql))

    async def columns(self, table: str) -> dict[str, str]:
        return await self._thread.call(lambda: table_columns(self._connected(), table))

    async def execute(self, sql: str) -> None:
        await self._thread.call(lambda: self._connected().execute(sql))

    async def run(self, work: Callable[[Target], T]) -> T:
        """``work`` on the connected target, on the ClickHouse thread."""
        return await self._thread.call(lambda: work(self._connected()))

    async def read(self, sql: str) -> list[list[Any]]:
        """A statement of the web's SQL endpoint: refused (``readonly.Refused``) unless it is one
        read-only statement over the pipeline's database alone."""
        return await self._thread.call(self._read, sql)

    def _read(self, sql: str) -> list[list[Any]]:
        target = self._connected()
        databases = {str(row[0]) for row in target.query("SHOW DATABASES")}
        readonly.check(sql, target.database, databases)
        return target.read(sql)

    async def close(self) -> None:
        await self._thread.call(self._reset)
        self._thread.shutdown(wait=False)
