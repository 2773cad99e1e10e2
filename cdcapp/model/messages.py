"""The wire contract between stages: keys, partitions, stage messages and sink rows, in batches.

Every message about one row travels under its *entity key* ``<source id>|<pk values...>``
(``postgres|42``), and every key has one partition (``partition_of``), whoever sends to it: the
stage's tables hold the key's state in that partition. A Kafka record on a stage or sink topic
carries a *batch*: a JSON list of messages whose keys all belong to the record's partition, so
Faust's per-record cost is paid once per batch, not once per change.

=========  =================================================================  =================
type       fields (``k``: the receiving key, or keys)                         sent by
=========  =================================================================  =================
``chg``    ``k``, ``op``, ``row`` (canonical values), ``pos``, ``ts``,         ingest
           ``snap`` (only on snapshot rows)
``sub``    ``k`` parent, ``c`` child entity, ``r`` ref name, ``ck`` child,     a child, to its
           ``ts``                                                             parent
``unsub``  the same                                                           a child
``info``   ``k`` list of children, ``r`` ref name, ``p`` parent, ``view``,    a parent, to its
           ``v``, ``ts``                                                      children
=========  =================================================================  =================

On the stage topic, which all entities share, every message also names the entity it is for
(``e``); the stage agent hands it to that entity's stage.

A sink row names its ClickHouse table and carries its canonical values plus ``_source``,
``_version`` and ``_is_deleted``; its partition is that of ``<table>|<entity key>``, so every row
of one ClickHouse key goes through one sink partition, in order.
"""

from __future__ import annotations

import zlib
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


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key on every stage and sink topic (and of its state in the tables)."""
    return zlib.crc32(key.encode()) % partitions


# --------------------------------------------------------------------------- stage messages
def change(key: str, op: str, row: dict[str, Any] | None, pos: int, ts_ms: int, snapshot: bool = False) -> Message:
    """A source change; ``snap`` (present only when true) marks a row read by a snapshot."""
    message = {"t": "chg", "k": key, "op": op, "row": row, "pos": pos, "ts": ts_ms}
    if snapshot:
        message["snap"] = True
    return message


def subscription(kind: str, parent_key: str, child_entity: str, ref: str, child_key: str, ts_ms: int) -> Message:
    """``sub`` or ``unsub``: the child's foreign key ``ref`` starts or stops pointing at the parent."""
    return {"t": kind, "k": parent_key, "c": child_entity, "r": ref, "ck": child_key, "ts": ts_ms}


def info(child_keys: list[str], ref: str, parent_key: str, view: dict[str, Any] | None, version: int,
         ts_ms: int) -> Message:
    """The parent's view (``None``: no inner-join row) at ``version``, for these children's ``ref``."""
    return {"t": "info", "k": child_keys, "r": ref, "p": parent_key, "view": view, "v": version, "ts": ts_ms}


def encode_batch(batch: list[Any]) -> bytes:
    return orjson.dumps(batch)


def decode_stage_batch(value: bytes) -> list[Message]:
    """The messages of a stage record; a malformed one among them is refused by ``apply_batch``."""
    return _decode_list(value, "stage")


def _decode_list(value: bytes | None, what: str) -> list[Any]:
    try:
        batch = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"{what} batch is not JSON: {exc}") from None
    if batch.__class__ is not list:
        raise BadMessage(f"a {what} batch is a JSON list, got {str(value)[:80]}")
    return batch


# --------------------------------------------------------------------------- sink rows
@dataclass(slots=True)
class SinkRow:
    """A row for a ClickHouse table, already carrying ``_source``, ``_version`` and ``_is_deleted``."""

    table: str
    key: str
    row: dict[str, Any]
    ts_ms: int

    @property
    def sink_key(self) -> str:
        return f"{self.table}{KEY_SEPARATOR}{self.key}"

    def encode(self) -> list[Any]:
        return [self.table, self.key, self.row, self.ts_ms]


def decode_sink_batch(value: bytes) -> list[SinkRow]:
    rows = []
    for item in _decode_list(value, "sink"):
        if item.__class__ is not list or len(item) != 4 or item[0].__class__ is not str \
                or item[1].__class__ is not str or item[2].__class__ is not dict:
            raise BadMessage(f"not a sink row: {str(item)[:80]}")
        rows.append(SinkRow(item[0], item[1], item[2], item[3] or 0))
    return rows


#: the Kafka header ``cdcapp dlq replay`` puts on a record it sends back: the replays so far
REPLAYS_HEADER = "cdcapp-replays"


def replays_of(headers: Any) -> int:
    """The replay count in a record's headers (aiokafka's (name, bytes) pairs, or Faust's dict)."""
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        if name == REPLAYS_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0
