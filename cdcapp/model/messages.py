"""The wire contract between stages: keys, stage messages and sink rows, with their encodings.

Every message about one row travels under its *entity key* ``<source id>|<pk values...>``
(``postgres|42``), so whoever sends it, it lands in the partition of that key. Stage messages:

=========  ==========================================================  =======================
type       fields                                                      sent by
=========  ==========================================================  =======================
``chg``    ``op``, ``row`` (canonical values), ``pos``, ``ts``          ingest
``sub``    ``c`` child entity, ``r`` ref name, ``k`` child key, ``ts``  a child, to its parent
``unsub``  the same                                                     a child, to its parent
``info``   ``r`` ref name, ``p`` parent key, ``view``, ``v``, ``ts``    a parent, to a child
=========  ==========================================================  =======================

A sink row names its ClickHouse table and carries its canonical values plus ``_source``,
``_version`` and ``_is_deleted``; it is keyed ``<table>|<entity key>`` so that every row of one
ClickHouse key goes through one sink partition, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

KEY_SEPARATOR = "|"
#: PostgreSQL's unchanged-TOAST placeholder, as it travels in a canonical row.
UNAVAILABLE_MARK = "__debezium_unavailable_value"

Message = dict[str, Any]


class BadMessage(ValueError):
    """Bytes that are not a message of the contract; the text says what is wrong."""


def entity_key(source: str, values: list[Any]) -> str:
    """The pipeline-wide key of a row: its source id, then its primary key values."""
    return KEY_SEPARATOR.join([source, *(str(v) for v in values)])


def source_of(key: str) -> str:
    return key.split(KEY_SEPARATOR, 1)[0]


# --------------------------------------------------------------------------- stage messages
def change(op: str, row: dict[str, Any] | None, pos: int, ts_ms: int) -> Message:
    return {"t": "chg", "op": op, "row": row, "pos": pos, "ts": ts_ms}


def subscription(kind: str, child_entity: str, ref: str, child_key: str, ts_ms: int) -> Message:
    """``sub`` or ``unsub``: the child's foreign key ``ref`` starts or stops pointing at the receiver."""
    return {"t": kind, "c": child_entity, "r": ref, "k": child_key, "ts": ts_ms}


def info(ref: str, parent_key: str, view: dict[str, Any] | None, version: int, ts_ms: int) -> Message:
    """The parent's view (``None``: no inner-join row) at ``version``, for a child's ``ref``."""
    return {"t": "info", "r": ref, "p": parent_key, "view": view, "v": version, "ts": ts_ms}


def encode_stage(message: Message) -> bytes:
    return orjson.dumps(message)


def decode_stage(value: bytes) -> Message:
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"stage message is not JSON: {exc}") from None
    if message.__class__ is not dict or message.get("t") not in ("chg", "sub", "unsub", "info"):
        raise BadMessage(f"not a stage message: {value[:80]!r}")
    return message


# --------------------------------------------------------------------------- sink rows
@dataclass(frozen=True, slots=True)
class SinkRow:
    """A row for a ClickHouse table, already carrying ``_source``, ``_version`` and ``_is_deleted``."""

    table: str
    key: str
    row: dict[str, Any]
    ts_ms: int


def encode_sink(row: SinkRow) -> tuple[bytes, bytes]:
    return f"{row.table}{KEY_SEPARATOR}{row.key}".encode(), orjson.dumps(
        {"table": row.table, "row": row.row, "ts": row.ts_ms})


def decode_sink(key: bytes | None, value: bytes) -> SinkRow:
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"sink message is not JSON: {exc}") from None
    if message.__class__ is not dict or message.get("table").__class__ is not str \
            or message.get("row").__class__ is not dict:
        raise BadMessage(f"not a sink message: {value[:80]!r}")
    table = message["table"]
    prefix = table + KEY_SEPARATOR
    text = key.decode() if key else ""
    return SinkRow(table, text[len(prefix):] if text.startswith(prefix) else text, message["row"],
                   message.get("ts") or 0)
