"""Source epochs: a source whose positions restarted orders its new changes above its old ones.

A change's position (``cdcapp.debezium.positions``) only grows while a source lives. MariaDB
after ``RESET MASTER`` or a failover to a server with its own binlog numbering, or a database
restored from a backup, starts again below: every new change of an existing row would look like
a replay and be dropped as stale. ``cdcapp source reset-epoch`` (explicit, never guessed: a
Connect restart replays positions below the newest ones too, and taking a replay for a restart
would let old values overwrite new ones) records an epoch: from the current end of every source
topic partition on, that source's positions are ``epoch << EPOCH_SHIFT | raw``, above everything
of earlier epochs. Records already in the topics keep their epoch whenever they are read again.

The epochs live in a compacted topic (``<prefix>.epochs``, key: the source id, value: every
epoch of that source with where it starts), read by each worker as it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from cdcapp.debezium.connect import DecodeError

#: raw positions below 2**59 leave four bits for 15 epochs under ClickHouse's UInt64 versions
#: (a PostgreSQL LSN below 512 PiB of WAL, a binlog file number below 32,768)
EPOCH_SHIFT = 59
MAX_EPOCH = 15


@dataclass(frozen=True)
class Epoch:
    number: int
    #: (topic, partition) -> the first offset of the epoch; a partition not listed did not exist
    #: yet, so all of it belongs to the epoch
    starts: dict[tuple[str, int], int]


@dataclass
class Epochs:
    """Every source's epochs, in order."""

    by_source: dict[str, list[Epoch]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, latest: dict[bytes, bytes]) -> "Epochs":
        """From the newest record of each key of the epochs topic."""
        epochs = cls()
        for key, value in latest.items():
            epochs.load(key.decode(), value)
        return epochs

    def __bool__(self) -> bool:
        return bool(self.by_source)

    def number(self, source: str, topic: str, partition: int, offset: int) -> int:
        number = 0
        for epoch in self.by_source.get(source, ()):
            if offset >= epoch.starts.get((topic, partition), 0):
                number = epoch.number
        return number

    def position(self, source: str, topic: str, partition: int, offset: int, raw: int) -> int:
        number = self.number(source, topic, partition, offset)
        if not number:
            return raw
        if raw >= 1 << EPOCH_SHIFT:
            raise DecodeError(f"position {raw} of source {source!r} does not fit below 2**{EPOCH_SHIFT}, "
                              f"which its epoch {number} needs")
        return number << EPOCH_SHIFT | raw

    def next_epoch(self, source: str, starts: dict[tuple[str, int], int]) -> Epoch:
        epochs = self.by_source.get(source, [])
        number = epochs[-1].number + 1 if epochs else 1
        if number > MAX_EPOCH:
            raise ValueError(f"source {source!r} already has {MAX_EPOCH} epochs, the most its positions can "
                             "carry; rebuild it under a new source id instead")
        return Epoch(number, dict(starts))

    def add(self, source: str, epoch: Epoch) -> None:
        self.by_source.setdefault(source, []).append(epoch)

    @staticmethod
    def encode(epochs: list[Epoch]) -> bytes:
        return orjson.dumps([
            {"epoch": e.number, "starts": [[t, p, o] for (t, p), o in sorted(e.starts.items())]} for e in epochs
        ])

    def load(self, source: str, value: bytes) -> None:
        """One record of the epochs topic (the newest wins: it lists every epoch of its source)."""
        decoded: list[dict[str, Any]] = orjson.loads(value)
        self.by_source[source] = [
            Epoch(int(e["epoch"]), {(str(t), int(p)): int(o) for t, p, o in e["starts"]}) for e in decoded
        ]
