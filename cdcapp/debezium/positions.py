"""``Change.position``: an int below 2**63 that orders the changes of one row.

* ``postgresql``: ``source.lsn``, the WAL position of the change record.  A second change to a
  row needs the row lock the first one holds until commit, so it is written to the WAL later;
  changes within one transaction are written in order.  Snapshot rows carry the snapshot's LSN,
  and streaming resumes after it.  Known limit: a transaction already running when the snapshot
  is taken and committing after it can have change records *below* the snapshot LSN, so for
  that race the snapshot row looks newer; ``Change.snapshot`` lets the consumer tell them apart.
  An incremental snapshot row (``cdcapp backfill``) has no LSN: it takes the stream's LSN when
  its chunk's window closed (``source.sequence``). Debezium drops from a chunk every row that
  changed inside the window, so changes before it are below that LSN and changes after it above.
* ``mysql``/``mariadb``: ``file_number << 44 | pos << 12 | row`` from ``source.file`` (numeric
  suffix, < 2**19), ``source.pos`` (the event's offset in that file, < 2**32) and ``source.row``
  (index of the row within the event, < 2**12).  The binlog is written at commit in commit order
  and file numbers only grow, so the triple is increasing in binlog order and two changes to a
  row can only appear in the order they committed.  Snapshot rows carry the binlog position
  read when the snapshot started (row 0); any later rows event lies strictly after it, behind
  at least its transaction's GTID/BEGIN event.  The order is lost only if the binlog is reset
  (``RESET MASTER``) or the connector follows a failover to a server with its own file numbering.
* ``sqlite``: ``source.seq``, the relay's change-log sequence.  SQLite has a single writer and
  the triggers append to the log inside the writing transaction, so the sequence is commit order
  (the relay must never reuse a sequence number, e.g. it needs ``AUTOINCREMENT``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from cdcapp.debezium.connect import DecodeError, show


def _source_int(source: dict[str, Any], name: str, limit: int) -> int:
    value = source.get(name)
    if value.__class__ is not int or not 0 <= value < limit:
        raise DecodeError(f"source.{name}: expected an integer in [0, {limit}), got {show(value)}")
    return value


def source_str(source: dict[str, Any], name: str) -> str:
    value = source.get(name)
    if value.__class__ is not str or not value:
        raise DecodeError(f"source.{name}: expected a non-empty string, got {show(value)}")
    return value


_BINLOG_FILE: Final = re.compile(r".*\.(\d+)", re.S)


def _postgres_position(source: dict[str, Any]) -> int:
    if source.get("lsn") is None and source.get("snapshot") == "incremental":
        return _incremental_position(source)
    return _source_int(source, "lsn", 1 << 63)


def _incremental_position(source: dict[str, Any]) -> int:
    """An incremental snapshot row has no LSN of its own; ``source.sequence`` holds the stream's
    ``[last commit LSN, LSN]`` when its chunk's window closed (orjson reads the JSON text)."""
    text = source.get("sequence")
    try:
        lsn = int(orjson.loads(text)[-1]) if text.__class__ is str else None
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError):
        lsn = None
    if lsn is None or not 0 <= lsn < 1 << 63:
        raise DecodeError(f"source.sequence: expected '[\"<lsn>\", \"<lsn>\"]' in an incremental snapshot row, "
                          f"got {show(text)}")
    return lsn


def _binlog_position(source: dict[str, Any]) -> int:
    file = source_str(source, "file")
    match = _BINLOG_FILE.fullmatch(file)
    if match is None:
        raise DecodeError(f"source.file: expected '<basename>.<number>', got {show(file)}")
    number = int(match.group(1))
    if number >= 1 << 19:
        raise DecodeError(f"source.file: binlog file number {number} does not fit in 19 bits")
    return number << 44 | _source_int(source, "pos", 1 << 32) << 12 | _source_int(source, "row", 1 << 12)


def _sqlite_position(source: dict[str, Any]) -> int:
    return _source_int(source, "seq", 1 << 63)


POSITIONS: Final[dict[str, Callable[[dict[str, Any]], int]]] = {
    "postgresql": _postgres_position,
    "mysql": _binlog_position,
    "mariadb": _binlog_position,
    "sqlite": _sqlite_position,
}
