"""Faust tables as the join keeps them, read and written a partition at a time.

A stage's two tables (its rows' state, and the subscription entries of its rows as parents) are
Faust tables of raw bytes: Faust owns their changelog topics, assigns their partitions with the
stage topic's, and recovers them from the changelog on every worker that takes a partition over.
cdcapp reads and writes them directly, in batches: Faust's per-key path (``table[key] = value``:
a future, a buffered send and a callback per write, and the partition taken from the event being
processed) costs more than the join itself. A batch's writes go to the partition's store at once
and to the changelog - the same topic, key, value and partition Faust would use - right after,
before the batch's events are acknowledged; the last offset sent per partition is recorded as
the store's persisted offset, as Faust does, so a restart reads only the changelog's tail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import orjson
import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from cdcapp.join.engine import State

SEP = b"\x00"

#: entries read by one RocksDB iterator of a scan
SCAN_CHUNK = 1000

# Bounded per partition database: a worker holds several tables of several partitions, and
# Faust's defaults (64 MiB write buffers, 3 of them, a 2 GiB block cache each) add up to gigabytes.
ROCKSDB_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


class RawBytesTable(faust.Table):
    """A table of bytes kept as they are, in the store and in the changelog.

    Faust derives a table's serializers from its key/value types and picks "json" for bytes;
    the changelog topic is built from them early, so they must be right from the constructor on.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"


def raw_table(app: faust.App, name: str, partitions: int) -> RawBytesTable:
    table = RawBytesTable(app, name=name, partitions=partitions, key_type=bytes, value_type=bytes,
                          beacon=app.tables.beacon, options=dict(ROCKSDB_OPTIONS))
    return app.tables.add(table)


class TableIO:
    """Direct, partition-explicit access to a ``RawBytesTable``, with changelog writes pending
    until ``flush``.

    RocksDB writes are gathered per partition and written as one ``WriteBatch`` - one append to
    the write-ahead log instead of one per key - before the partition is scanned and at
    ``flush``, before the changelog is sent; reads see them meanwhile.
    """

    def __init__(self, table: RawBytesTable) -> None:
        self.table = table
        #: partition -> the changelog records not sent yet, in order
        self.pending: dict[int, list[tuple[bytes, bytes | None]]] = {}
        #: partition -> key -> value (None: delete) not yet written to RocksDB
        self.unwritten: dict[int, dict[bytes, bytes | None]] = {}

    @property
    def _rocksdb(self) -> RocksDBStore | None:
        store = self.table.data
        return store if isinstance(store, RocksDBStore) else None

    def get(self, partition: int, key: bytes) -> bytes | None:
        rocksdb = self._rocksdb
        if rocksdb is None:
            return self.table.data.data.get(key)
        unwritten = self.unwritten.get(partition)
        if unwritten is not None and key in unwritten:
            return unwritten[key]
        return rocksdb._db_for_partition(partition).get(key)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Write (``None``: delete) in the store now and in the changelog at the next ``flush``."""
        rocksdb = self._rocksdb
        if rocksdb is None:
            if value is None:
                self.table.data.data.pop(key, None)
            else:
                self.table.data.data[key] = value
        else:
            unwritten = self.unwritten.get(partition)
            if unwritten is None:
                unwritten = self.unwritten[partition] = {}
            unwritten[key] = value
        records = self.pending.get(partition)
        if records is None:
            records = self.pending[partition] = []
        records.append((key, value))

    def write(self) -> None:
        """Write what RocksDB has not got yet, a batch per partition."""
        rocksdb = self._rocksdb
        if rocksdb is not None:
            for partition in list(self.unwritten):
                self._write(rocksdb, partition)

    def _write(self, rocksdb: RocksDBStore, partition: int) -> None:
        unwritten = self.unwritten.pop(partition, None)
        if not unwritten:
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in unwritten.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        rocksdb._db_for_partition(partition).write(batch)

    def scan(self, partition: int, prefix: bytes) -> Iterator[bytes]:
        """The keys that start with ``prefix``, in key order (the memory store: in any order)."""
        rocksdb = self._rocksdb
        if rocksdb is None:
            yield from [k for k in self.table.data.data if k.startswith(prefix)]
            return
        for chunk in self._chunks(rocksdb, partition, prefix, values=False):
            yield from chunk

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a partition, in key order; writes made meanwhile may or may not
        show (the memory store: as of the call)."""
        rocksdb = self._rocksdb
        if rocksdb is None:
            return iter(list(self.table.data.data.items()))
        return (item for chunk in self._chunks(rocksdb, partition, b"", values=True) for item in chunk)

    async def flush(self, producer: Any) -> None:
        """Send the pending writes to the changelog, in batches per partition."""
        self.write()
        if not self.pending:
            return
        topic = self.table.changelog_topic.get_topic_name()
        by_partition, self.pending = self.pending, {}
        store = self.table.data
        for partition, records in by_partition.items():
            last = await producer.send_records(topic, partition, records)
            # The last batch's offset is its first record's; the persisted offset is a lower
            # bound either way: recovery reads the changelog from there, and re-reading is harmless.
            last.add_done_callback(
                lambda fut, tp=TP(topic, partition): None if fut.cancelled() or fut.exception()
                else store.set_persisted_offset(tp, fut.result().offset))

    def _chunks(self, rocksdb: RocksDBStore, partition: int, prefix: bytes, values: bool) -> Iterator[list[Any]]:
        """A partition's entries from ``prefix`` on, ``SCAN_CHUNK`` at a time, each chunk read by an
        iterator of its own. Readers await between entries (a broadcast's sends, the pending-joins
        count), and a rebalance's revocation meanwhile drops Faust's handle of the database: the
        next read opens it again, which RocksDB refuses (its lock) while an iterator still holds
        the old handle - the batch, and the worker, would fail."""
        after: bytes | None = None
        while True:
            self._write(rocksdb, partition)
            chunk = _read_chunk(rocksdb._db_for_partition(partition), prefix, after, values)
            if chunk:
                yield chunk
            if len(chunk) < SCAN_CHUNK:
                return
            after = chunk[-1][0] if values else chunk[-1]


def _read_chunk(db: Any, prefix: bytes, after: bytes | None, values: bool) -> list[Any]:
    """Up to ``SCAN_CHUNK`` entries that start with ``prefix``, from the first key past ``after``."""
    chunk: list[Any] = []
    entries = db.items(from_key=after or prefix) if values else db.keys(from_key=after or prefix)
    for entry in entries:
        key = entry[0] if values else entry
        if not key.startswith(prefix):
            break
        if key == after:
            continue
        chunk.append(entry)
        if len(chunk) == SCAN_CHUNK:
            break
    return chunk


class StageTables:
    """One entity's state table and subscription table."""

    def __init__(self, app: faust.App, entity: str, partitions: int) -> None:
        self.state = TableIO(raw_table(app, f"{entity}-state", partitions))
        self.subscriptions = TableIO(raw_table(app, f"{entity}-subscriptions", partitions))

    def store(self, partition: int) -> "PartitionStore":
        return PartitionStore(self, partition)

    async def flush(self, producer: Any) -> None:
        await self.state.flush(producer)
        await self.subscriptions.flush(producer)


class PartitionStore:
    """The ``StageStore`` of one partition (``cdcapp.join.apply``) over a stage's tables."""

    def __init__(self, tables: StageTables, partition: int) -> None:
        self.tables = tables
        self.partition = partition

    def get(self, key: str) -> State | None:
        raw = self.tables.state.get(self.partition, key.encode())
        return orjson.loads(raw) if raw is not None else None

    def put(self, key: str, state: State) -> None:
        self.tables.state.put(self.partition, key.encode(), orjson.dumps(state))

    def subscribe(self, parent: str, child_entity: str, ref: str, child_key: str, on: bool) -> None:
        entry = SEP.join((parent.encode(), child_entity.encode(), ref.encode(), child_key.encode()))
        self.tables.subscriptions.put(self.partition, entry, b"" if on else None)

    def children(self, parent: str) -> Iterator[tuple[str, str, str]]:
        prefix = parent.encode() + SEP
        for entry in self.tables.subscriptions.scan(self.partition, prefix):
            child_entity, ref, child_key = entry[len(prefix):].decode().split("\x00", 2)
            yield child_entity, ref, child_key
