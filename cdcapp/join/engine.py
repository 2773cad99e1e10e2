"""The join as pure state transitions: a foreign-key join of changelog tables, KTable style.

Every entity of the spec (customers, products, orders, order_items...) is a *stage* whose state
is partitioned by the entity's own key. A stage keeps, per key:

- the latest row image and its source position (``pos``), or that it was deleted;
- for each reference to a parent entity: the parent key the row points at, and the parent's
  *view* (the parent's row joined with its own parents, recursively) with the parent's version;
- ``v``, the version of its own view: never decreasing, ``max(pos, parents' v, previous v)``.

Parents keep the list of children that *subscribed* to them. A child sends ``sub`` to a parent
when its foreign key starts pointing at it and ``unsub`` when it stops; the parent answers a
``sub`` with its current view and sends every later change of its view to all subscribers
(``info``). A child drops an ``info`` from a parent it no longer points at, or one older than
the one it holds, so late messages of a previous foreign key never win. Deleting a row, or a
missing parent, makes the view ``None`` (inner join); the fact row then becomes a deleted row.

Every message of one (sender key -> receiver key) pair travels through one Kafka partition, so
it arrives in order; nothing else is assumed about ordering across topics. Re-delivered own
changes (same position) re-emit everything they caused, so at-least-once delivery after a crash
cannot leave a message lost between the changelog write and the producer flush.

This module is pure: messages in, new state and outputs out (the wire format is
``cdcapp.model.messages``); ``cdcapp.runtime`` runs it over Kafka and Faust tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdcapp.model import messages
from cdcapp.model.messages import UNAVAILABLE_MARK, SinkRow, entity_key, source_of
from cdcapp.model.spec import Spec, compile_measure
from cdcapp.model.types import ColumnType, parse_type

NO_VERSION = -1

State = dict[str, Any]
Subscribers = dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Send:
    """A message for another stage (``entity``), keyed by that stage's key."""

    entity: str
    key: str
    message: dict[str, Any]


@dataclass(slots=True)
class Result:
    state: State | None
    subscribers: Subscribers
    outputs: list[Send | SinkRow] = field(default_factory=list)
    outcome: str = "applied"  # applied | duplicate | stale


class _FactShape:
    def __init__(self, spec: Spec, table: str, entity: str, columns: dict[str, str], measures: dict) -> None:
        self.table = table
        self.paths = [(name, *spec.resolve_path(entity, path)) for name, path in columns.items()]
        self.measures = [
            (name, compile_measure(m.expr, set(columns)), parse_type(m.type)) for name, m in measures.items()
        ]
        self.key_paths = {name: path for name, path in columns.items() if path in spec.entities[entity].key}

    def row(self, view: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, refs, column, _ in self.paths:
            node = view
            for ref in refs:
                node = node["refs"][ref]
            out[name] = node["row"][column]
        for name, compute, column_type in self.measures:
            out[name] = column_type.canonical(compute(out))
        return out

    def deleted_row(self, root_row: dict[str, Any]) -> dict[str, Any]:
        """Only the key matters in a deleted row; the rest is filler of the right type."""
        out = {name: column_type.default for name, _, _, column_type in self.paths}
        out.update({name: column_type.default for name, _, column_type in self.measures})
        out.update({name: root_row[path] for name, path in self.key_paths.items()})
        return out


class EntityStage:
    """The state machine of one entity. One instance serves every key of that entity."""

    def __init__(self, spec: Spec, entity: str) -> None:
        self.entity = entity
        self.refs = spec.entities[entity].refs
        self.children = spec.children[entity]
        self.column_types: dict[str, ColumnType] = spec.column_types(entity)
        self.dimensions = [d.table for d in spec.dimensions if d.entity == entity]
        self.facts = [
            _FactShape(spec, f.table, entity, f.columns, f.measures) for f in spec.facts if f.entity == entity
        ]

    # ---------------------------------------------------------------- entry point
    def process(self, key: str, message: dict[str, Any], state: State | None, subscribers: Subscribers) -> Result:
        kind = message["t"]
        if kind == "chg":
            return self._on_change(key, message, state, subscribers)
        if kind == "info":
            return self._on_info(key, message, state, subscribers)
        if kind == "sub":
            return self._on_subscribe(key, message, state, subscribers)
        if kind == "unsub":
            return self._on_unsubscribe(message, state, subscribers)
        raise ValueError(f"unknown stage message type {kind!r}")

    # ---------------------------------------------------------------- own changes
    def _on_change(self, key: str, msg: dict[str, Any], state: State | None, subs: Subscribers) -> Result:
        state = state or self._new_state(key)
        pos, ts = msg["pos"], msg["ts"]
        if pos < state["pos"]:
            return Result(state, subs, outcome="stale")
        outputs: list[Send | SinkRow] = []
        if pos == state["pos"]:
            outcome = "duplicate"
            outputs.extend(self._resubscribe(key, state, ts))
        else:
            outcome = "applied"
            live = msg["op"] != "d"
            previous = state["row"]
            if live:
                state["row"] = _merge_unavailable(msg["row"], previous)
            elif previous is None and msg["row"]:
                state["row"] = msg["row"]
            state["live"] = live
            state["pos"] = pos
            state["v"] = max(state["v"], pos)
            outputs.extend(self._follow_foreign_keys(key, state, ts))
        outputs.extend(self._dimension_rows(key, state, ts))
        outputs.extend(self._propagate(key, state, subs, ts, force=outcome == "duplicate"))
        return Result(state, subs, outputs, outcome)

    def _new_state(self, key: str) -> State:
        return {
            "row": None,
            "live": False,
            "pos": NO_VERSION,
            "v": NO_VERSION,
            "refs": {name: {"key": None, "view": None, "v": NO_VERSION} for name in self.refs},
            "view_live": False,
            "facts": {},
        }

    def _follow_foreign_keys(self, key: str, state: State, ts: int) -> list[Send]:
        outputs: list[Send] = []
        source = source_of(key)
        for name, ref in self.refs.items():
            slot = state["refs"][name]
            target = None
            if state["live"]:
                values = [state["row"].get(c) for c in ref.columns]
                if all(v is not None for v in values):
                    target = entity_key(source, values)
            if target == slot["key"]:
                continue
            if slot["key"] is not None:
                outputs.append(Send(ref.entity, slot["key"], self._subscription("unsub", name, key, ts)))
            slot.update(key=target, view=None, v=NO_VERSION)
            if target is not None:
                outputs.append(Send(ref.entity, target, self._subscription("sub", name, key, ts)))
        return outputs

    def _resubscribe(self, key: str, state: State, ts: int) -> list[Send]:
        return [
            Send(ref.entity, state["refs"][name]["key"], self._subscription("sub", name, key, ts))
            for name, ref in self.refs.items()
            if state["refs"][name]["key"] is not None
        ]

    def _subscription(self, kind: str, ref_name: str, key: str, ts: int) -> dict[str, Any]:
        return messages.subscription(kind, self.entity, ref_name, key, ts)

    # ---------------------------------------------------------------- parents
    def _on_info(self, key: str, msg: dict[str, Any], state: State | None, subs: Subscribers) -> Result:
        if state is None:
            return Result(state, subs, outcome="stale")
        slot = state["refs"].get(msg["r"])
        if slot is None or slot["key"] != msg["p"] or msg["v"] < slot["v"]:
            return Result(state, subs, outcome="stale")
        slot["view"] = msg["view"]
        slot["v"] = msg["v"]
        state["v"] = max(state["v"], msg["v"])
        return Result(state, subs, self._propagate(key, state, subs, msg["ts"], force=False))

    # ---------------------------------------------------------------- children
    def _on_subscribe(self, key: str, msg: dict[str, Any], state: State | None, subs: Subscribers) -> Result:
        channel = f"{msg['c']}.{msg['r']}"
        members = subs.setdefault(channel, [])
        if msg["k"] not in members:
            members.append(msg["k"])
        view = self.view(state)
        version = state["v"] if state else NO_VERSION
        reply = Send(msg["c"], msg["k"], messages.info(msg["r"], key, view, version, msg["ts"]))
        return Result(state, subs, [reply])

    def _on_unsubscribe(self, msg: dict[str, Any], state: State | None, subs: Subscribers) -> Result:
        channel = f"{msg['c']}.{msg['r']}"
        members = subs.get(channel)
        if members and msg["k"] in members:
            members.remove(msg["k"])
            if not members:
                del subs[channel]
        return Result(state, subs)

    # ---------------------------------------------------------------- views and rows
    def view(self, state: State | None) -> dict[str, Any] | None:
        """This row joined with its parents' views, or None if the inner join has no row."""
        if state is None or not state["live"]:
            return None
        refs = {}
        for name, slot in state["refs"].items():
            if slot["view"] is None:
                return None
            refs[name] = slot["view"]
        return {"row": state["row"], "refs": refs}

    def _propagate(self, key: str, state: State, subs: Subscribers, ts: int, *, force: bool) -> list[Send | SinkRow]:
        view = self.view(state)
        outputs: list[Send | SinkRow] = []
        if view is not None or state["view_live"] or force:
            for child, ref_name in self.children:
                for child_key in subs.get(f"{child}.{ref_name}", ()):
                    outputs.append(Send(child, child_key, messages.info(ref_name, key, view, state["v"], ts)))
        state["view_live"] = view is not None
        source = source_of(key)
        for fact in self.facts:
            meta = {"_source": source, "_version": state["v"]}
            if view is not None:
                outputs.append(SinkRow(fact.table, key, {**fact.row(view), **meta, "_is_deleted": 0}, ts))
                state["facts"][fact.table] = True
            elif state["facts"].get(fact.table):
                deleted = {**fact.deleted_row(state["row"]), **meta, "_is_deleted": 1}
                outputs.append(SinkRow(fact.table, key, deleted, ts))
                state["facts"][fact.table] = False
        return outputs

    def _dimension_rows(self, key: str, state: State, ts: int) -> list[SinkRow]:
        if not self.dimensions:
            return []
        image = state["row"] or {}
        row = {c: _or_default(image.get(c), t) for c, t in self.column_types.items()}
        row.update(_source=source_of(key), _version=state["pos"], _is_deleted=0 if state["live"] else 1)
        return [SinkRow(table, key, row, ts) for table in self.dimensions]


def _or_default(value: Any, column_type: ColumnType) -> Any:
    return column_type.default if value is None or value == UNAVAILABLE_MARK else value


def _merge_unavailable(row: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """PostgreSQL sends unchanged TOASTed values as a placeholder: keep what we had."""
    if previous is None or UNAVAILABLE_MARK not in row.values():
        return row
    return {c: (previous.get(c, v) if v == UNAVAILABLE_MARK else v) for c, v in row.items()}
