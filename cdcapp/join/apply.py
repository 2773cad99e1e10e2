"""Applying one stage message to a stage's store: the one rule that production and tests share.

``EntityStage.process`` is pure; ``apply`` reads the key's state from a ``StageStore``, runs it,
writes back what changed and returns the outputs for the caller to deliver (to Kafka in
``cdcapp.runtime.stage``, to in-memory queues in ``cdcapp.join.router``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

import orjson

from cdcapp.join.engine import EntityStage, Result, State, Subscribers


class StageStore(Protocol):
    """One entity's state and subscriber lists, read and written under the key being processed."""

    def state(self, key: str) -> State | None: ...

    def subscribers(self, key: str) -> Subscribers: ...

    def put_state(self, key: str, state: State) -> None: ...

    def put_subscribers(self, key: str, subscribers: Subscribers) -> None: ...

    def delete_subscribers(self, key: str) -> None: ...


def apply(stage: EntityStage, store: StageStore, key: str, message: dict[str, Any]) -> Result:
    subscribers = store.subscribers(key)
    had_subscribers = bool(subscribers)
    result = stage.process(key, message, store.state(key), subscribers)
    if result.outcome == "stale":
        return result
    if result.state is not None:
        store.put_state(key, result.state)
    if message["t"] in ("sub", "unsub"):
        if result.subscribers:
            store.put_subscribers(key, result.subscribers)
        elif had_subscribers:
            store.delete_subscribers(key)
    return result


class BytesStageStore:
    """A ``StageStore`` over two mappings of key bytes to orjson bytes, as the Faust tables hold them.

    Production passes the stage's two Faust tables; tests pass dicts. Values are encoded on every
    write, so nothing the engine keeps mutating leaks into the store.
    """

    def __init__(self, states: MutableMapping[bytes, bytes], subscribers: MutableMapping[bytes, bytes]) -> None:
        self.states = states
        self.subs = subscribers

    def state(self, key: str) -> State | None:
        raw = self.states.get(key.encode())
        return orjson.loads(raw) if raw is not None else None

    def subscribers(self, key: str) -> Subscribers:
        raw = self.subs.get(key.encode())
        return orjson.loads(raw) if raw is not None else {}

    def put_state(self, key: str, state: State) -> None:
        self.states[key.encode()] = orjson.dumps(state)

    def put_subscribers(self, key: str, subscribers: Subscribers) -> None:
        self.subs[key.encode()] = orjson.dumps(subscribers)

    def delete_subscribers(self, key: str) -> None:
        del self.subs[key.encode()]
