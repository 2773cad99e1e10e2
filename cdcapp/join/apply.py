"""Applying a batch of stage messages to a stage's store: the one rule that production and the
property tests share.

A batch holds messages for keys of one partition of one entity's stage. Its messages are grouped
per key, in order; each group is one state transition (``EntityStage.process``) read once from
and written once to the store. Broadcasts are expanded afterwards over the parent's subscription
entries, streamed in chunks of at most ``chunk`` children per message, so a parent with a million
children needs neither a value nor a message that grows with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cdcapp.join.engine import Broadcast, EntityStage, Outputs, Send, State
from cdcapp.model import messages
from cdcapp.model.messages import Message


class StageStore(Protocol):
    """One entity's state, and the subscription entries of its rows as parents, for one partition."""

    def get(self, key: str) -> State | None: ...

    def put(self, key: str, state: State) -> None: ...

    def subscribe(self, parent: str, child_entity: str, ref: str, child_key: str, on: bool) -> None: ...

    def children(self, parent: str) -> Iterator[tuple[str, str, str]]:
        """(child entity, ref, child key) of every subscription entry of ``parent``."""
        ...


@dataclass
class BatchResult(Outputs):
    #: groups that raised, with the exception: their key's state is left as it was
    failed: list[tuple[str, list[Message], Exception]] = field(default_factory=list)
    #: key -> whether it waits for a missing join side now (``EntityStage.waiting``), for every key
    #: whose state the batch changed
    waiting: dict[str, bool] = field(default_factory=dict)


def by_key(batch: Iterable[Message]) -> tuple[dict[str, list[Message]], list[Any]]:
    """The messages per receiving key, in order, and those that name no key."""
    groups: dict[str, list[Message]] = {}
    malformed = []
    for message in batch:
        keys = message.get("k") if message.__class__ is dict else None
        if keys.__class__ is str:
            groups.setdefault(keys, []).append(message)
        elif keys.__class__ is list:  # an info for several children of one parent
            for key in keys:
                groups.setdefault(key, []).append(message)
        else:
            malformed.append(message)
    return groups, malformed


def apply_batch(stage: EntityStage, store: StageStore, batch: Iterable[Message]) -> BatchResult:
    out = BatchResult()
    groups, malformed = by_key(batch)
    if malformed:
        out.failed.append(("?", malformed, ValueError("stage messages without a key")))
    for key, group in groups.items():
        marks = len(out.sends), len(out.rows), len(out.broadcasts)
        try:
            result = stage.process(key, store.get(key), group, out)
        except Exception as exc:  # noqa: BLE001 - one poison group must not stop the partition
            # What the group emitted before it failed goes with it: its state was not stored.
            del out.sends[marks[0]:], out.rows[marks[1]:], out.broadcasts[marks[2]:]
            out.failed.append((key, group, exc))
            continue
        if result.changed:
            store.put(key, result.state)
            out.waiting[key] = stage.waiting(result.state)
        for (child_entity, ref, child_key), on in result.subscriptions.items():
            store.subscribe(key, child_entity, ref, child_key, on)
    return out


def expand(broadcast: Broadcast, store: StageStore, partition_of: Callable[[str], int],
           chunk: int = 1000) -> Iterator[Send]:
    """The broadcast as ``info`` messages, one per (child entity, ref, partition) and chunk."""
    pending: dict[tuple[str, str, int], list[str]] = {}
    for child_entity, ref, child_key in store.children(broadcast.key):
        slot = (child_entity, ref, partition_of(child_key))
        keys = pending.setdefault(slot, [])
        keys.append(child_key)
        if len(keys) >= chunk:
            yield _info(broadcast, child_entity, ref, pending.pop(slot))
    for (child_entity, ref, _), keys in pending.items():
        yield _info(broadcast, child_entity, ref, keys)


def _info(broadcast: Broadcast, child_entity: str, ref: str, keys: list[str]) -> Send:
    return Send(child_entity, keys[0],
                messages.info(keys, ref, broadcast.key, broadcast.view, broadcast.version, broadcast.ts_ms))
