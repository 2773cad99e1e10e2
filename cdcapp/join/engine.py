"""The join as pure state transitions: a foreign-key join of changelog tables, KTable style.

Every entity of the spec (customers, products, orders, order_items...) is a *stage* whose state
is partitioned by the entity's own key. A stage keeps, per key:

- the latest row image and its source position (``pos``), and whether the row is live;
- for each reference it follows (``cdcapp.join.plan``): the parent key the row points at, the
  parent's *view* (the parent's projection joined with its own parents, recursively) with the
  parent's version, and the parent it pointed at before (``prev``, to repeat an unsubscription);
- ``v``, the version of its own view: never decreasing, ``max(pos, parents' v, previous v)``.

Parents keep one subscription entry per (parent, child entity, reference, child): a child sends
``sub`` when its foreign key starts pointing at a parent and ``unsub`` when it stops. A parent
tells its subscribers its view when the view changes (a *broadcast*, expanded by the caller over
the subscription entries, however many there are), and answers a new subscriber with it (a row
never seen has nothing to answer with: no view, no version). A child
takes an ``info`` only from the parent it points at now, and only if it is not older than what
it holds, so late messages of a previous foreign key never win; an ``info`` from a parent it no
longer points at is answered with an ``unsub``, which heals a subscription whose ``unsub`` was
lost (not from the parent it left last, whose ``unsub`` went out with the move and goes out
again with any replay of it). Deleting a row, or a missing parent, makes the view ``None`` (inner join); the fact row
then becomes a deleted row.

Messages are processed per key in *groups*: all the messages of a batch for one key, in order,
as one state transition. What a group emits is computed from the state before and after it, so
it equals what the messages one by one would have left in ClickHouse and in the children: the
last view, the last fact row, the net subscriptions.

Every message of one (sender key -> receiver key) pair travels through one Kafka partition, so it
arrives in order. A change delivered again with its position (a replay after a crash: the state
was saved, its outputs maybe not) re-emits everything the current state implies - subscriptions,
the unsubscription from the previous parent, the dimension row, the fact row (live or deleted)
and the view - and an ``info`` delivered again re-emits the fact row and the view. An applied
snapshot row (a backfill) re-emits the dimension and fact rows even when it changed nothing.

This module is pure: messages in, new state and outputs out (the wire format is
``cdcapp.model.messages``); ``cdcapp.join.apply`` runs it against a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdcapp.join.plan import EntityPlan
from cdcapp.model import messages
from cdcapp.model.messages import UNAVAILABLE_MARK, Message, SinkRow, entity_key, source_of

NO_VERSION = -1

State = dict[str, Any]


@dataclass(slots=True)
class Send:
    """A message for another stage (``entity``), for its key ``key``."""

    entity: str
    key: str
    message: Message


@dataclass(slots=True)
class Broadcast:
    """The view of ``key`` at ``version`` for every child subscribed to it now."""

    key: str
    view: dict[str, Any] | None
    version: int
    ts_ms: int


@dataclass(slots=True)
class Outputs:
    """What groups emit, gathered over a batch: ``process`` appends to these."""

    sends: list[Send] = field(default_factory=list)
    rows: list[SinkRow] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    #: (message type, outcome) -> messages. Outcomes: applied; duplicate (delivered again); stale
    #: (older than what the state holds); orphan (an info from a parent the row does not point
    #: at); noop (an answer that the parent has no version yet)
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    #: own changes dropped as older than the state: (key, their position, the state's position)
    stale: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class GroupResult:
    state: State | None
    #: the state differs from the one read: store it
    changed: bool
    #: (child entity, ref, child key) -> subscribed (True) or not (False) after the group
    subscriptions: dict[tuple[str, str, str], bool]


class EntityStage:
    """The state machine of one entity. One instance serves every key of that entity."""

    def __init__(self, plan: EntityPlan) -> None:
        self.entity = plan.name
        self.plan = plan
        self.refs = plan.join_refs
        self.column_types = plan.columns
        self.has_children = bool(plan.children)

    # ------------------------------------------------------------------ views
    def view(self, state: State | None) -> dict[str, Any] | None:
        """What children get of this row: its projection joined with its parents' views."""
        if state is None or not state["live"]:
            return None
        slots = state["refs"]
        for name in self.refs:
            if slots[name]["view"] is None:
                return None
        row = state["row"]
        return {"row": {c: row.get(c) for c in self.plan.projection},
                "refs": {name: slots[name]["view"] for name in self.plan.exported_refs}}

    def waiting(self, state: State | None) -> bool:
        """A live row whose reference points at a parent without a view (not arrived yet, deleted,
        or waiting itself): it has no fact row and gives its children nothing until that changes."""
        if state is None or not state["live"]:
            return False
        slots = state["refs"]
        for name in self.refs:
            slot = slots[name]
            if slot["key"] is not None and slot["view"] is None:
                return True
        return False

    def _fact_input(self, state: State | None) -> tuple[list[Any], list[Any]] | None:
        """What this row's fact rows are computed from (None: no inner-join row); comparing it
        costs a fraction of computing the rows."""
        if state is None or not state["live"]:
            return None
        slots = state["refs"]
        views = [slots[name]["view"] for name in self.refs]
        if None in views:
            return None
        return list(map(state["row"].get, self.plan.fact_columns)), views

    def _fact_rows(self, state: State) -> list[dict[str, Any] | None]:
        if self._fact_input(state) is None:
            return [None] * len(self.plan.facts)
        refs = {name: state["refs"][name]["view"] for name in self.refs}
        return [fact.row(state["row"], refs) for fact in self.plan.facts]

    def _new_state(self) -> State:
        return {
            "row": None, "live": False, "pos": NO_VERSION, "v": NO_VERSION,
            "refs": {name: {"key": None, "view": None, "v": NO_VERSION, "prev": None} for name in self.refs},
        }

    # ------------------------------------------------------------------ a group
    def process(self, key: str, state: State | None, group: list[Message], out: Outputs) -> GroupResult:
        """One group: the messages of a batch for ``key``, in order. Its sends, rows, broadcast and
        outcomes go to ``out``; the new state and the subscription changes are returned."""
        outcomes = out.outcomes
        before = state
        # Copied when the first own change or info may change it: a group of subscriptions only
        # (a parent's new children) reads nothing of it.
        copied = False
        parents: dict[tuple[str, str], str] = {}  # (ref, parent key) -> last of "sub" / "unsub"
        subscriptions: dict[tuple[str, str, str], bool] = {}
        new_subscribers: list[tuple[str, str, str]] = []
        own_applied = replayed = info_applied = info_replayed = snapshot_applied = False
        # What children and ClickHouse hold may be any state this group passes through, not only
        # the one it starts from: a crash can lose the state of batches whose outputs were sent,
        # and their replay then arrives as one group. So outputs follow every intermediate state
        # that differs from the start, and the final one supersedes them all. (Tracked from the
        # first message that changes the state: a group of subscriptions only leaves it be.)
        views: _Tracked | None = None
        facts: _Tracked | None = None
        tracking = False
        ts = 0
        for message in group:
            message_ts = message.get("ts") or 0
            if message_ts > ts:
                ts = message_ts
            kind = message["t"]
            if not copied and (kind == "chg" or kind == "info"):
                state = _copy(before) if before is not None else self._new_state()
                copied = True
            if kind == "chg":
                outcome = self._on_change(key, state, message, parents)
                if outcome == "stale":
                    out.stale.append((key, message["pos"], state["pos"]))
                own_applied |= outcome == "applied"
                snapshot_applied |= outcome == "applied" and bool(message.get("snap"))
                replayed |= outcome == "duplicate"
            elif kind == "info":
                outcome = self._on_info(state, message, parents)
                info_applied |= outcome == "applied"
                info_replayed |= outcome == "duplicate"
            elif kind == "sub" or kind == "unsub":
                entry = (message["c"], message["r"], message["ck"])
                subscriptions[entry] = kind == "sub"
                if kind == "sub":
                    new_subscribers.append(entry)
                outcomes[kind, "applied"] = outcomes.get((kind, "applied"), 0) + 1
                continue
            else:
                raise ValueError(f"unknown stage message type {kind!r}")
            outcomes[kind, outcome] = outcomes.get((kind, outcome), 0) + 1
            if outcome == "applied":
                if not tracking:
                    tracking = True
                    if self.has_children:
                        views = _Tracked(self.view(before))
                    if self.plan.facts:
                        facts = _Tracked(self._fact_input(before))
                if views is not None:
                    views.see(self.view(state))
                if facts is not None and not facts.dirty:
                    facts.see(self._fact_input(state))

        if replayed:
            self._resubscribe(state, parents)
        if parents:
            refs = self.refs
            for (ref, parent_key), kind in parents.items():
                out.sends.append(Send(refs[ref].entity, parent_key,
                                      messages.subscription(kind, parent_key, self.entity, ref, key, ts)))
        force = replayed or info_replayed
        if own_applied or force or tracking:
            source = source_of(key)
            if self.plan.dimensions and (own_applied or replayed):
                self._dimension_rows(key, state, source, ts, out.rows)
            # A snapshot row (a backfill) rewrites the row's fact rows even when it changes nothing
            # here: a backfill is how a ClickHouse table that lost rows, or a new one, is filled.
            if self.plan.facts and (force or snapshot_applied or (facts is not None and facts.dirty)):
                self._fact_outputs(key, state, source, ts, out.rows)
        if self.has_children and (force or (views is not None and views.dirty) or new_subscribers):
            # Only applied messages change the state: the last one seen is the final view.
            view = views.last if views is not None else self.view(state)
            if force or (views is not None and views.dirty):
                out.broadcasts.append(Broadcast(key, view, state["v"], ts))
            elif before is not None:
                # A row never seen before has nothing to answer with (no view, no version): the
                # subscriber holds exactly that already, and gets the view in a broadcast once there
                # is one. (A quarter of a drain's answers to new order items.)
                version = state["v"]
                for child_entity, ref, child_key in new_subscribers:
                    if subscriptions[(child_entity, ref, child_key)]:
                        out.sends.append(Send(child_entity, child_key,
                                              messages.info([child_key], ref, key, view, version, ts)))
        changed = own_applied or info_applied
        return GroupResult(state if changed or before is not None else None, changed, subscriptions)

    # ------------------------------------------------------------------ own changes
    def _on_change(self, key: str, state: State, msg: Message, parents: dict[tuple[str, str], str]) -> str:
        outcome = _order(state, msg)
        if outcome != "applied":
            return outcome
        pos = msg["pos"]
        live = msg["op"] != "d"
        previous = state["row"]
        if live:
            state["row"] = _merge_unavailable(msg["row"], previous)
        elif previous is None and msg["row"]:
            state["row"] = msg["row"]
        state["live"] = live
        if msg.get("snap"):
            state["snap"] = True
        elif state.get("snap"):
            # The stream overrides a snapshot row: remember the snapshot's position, so that a
            # replay of that row is not taken for a newer one.
            state["snap"] = False
            state["snap_pos"] = max(state["pos"], state.get("snap_pos", NO_VERSION))
        state["pos"] = pos
        state["v"] = max(state["v"], pos)
        source = source_of(key)
        for name, ref in self.refs.items():
            slot = state["refs"][name]
            target = None
            if live:
                values = list(map(state["row"].get, ref.columns))
                if all(v is not None and v != UNAVAILABLE_MARK for v in values):
                    target = entity_key(source, values)
            if target == slot["key"]:
                continue
            if slot["key"] is not None:
                parents[(name, slot["key"])] = "unsub"
                slot["prev"] = slot["key"]
            slot.update(key=target, view=None, v=NO_VERSION)
            if target is not None:
                parents[(name, target)] = "sub"
        return "applied"

    def _resubscribe(self, state: State, parents: dict[tuple[str, str], str]) -> None:
        for name, slot in state["refs"].items():
            if slot.get("prev") is not None and slot["prev"] != slot["key"]:
                parents.setdefault((name, slot["prev"]), "unsub")
            if slot["key"] is not None:
                parents[(name, slot["key"])] = "sub"

    # ------------------------------------------------------------------ parents
    def _on_info(self, state: State, msg: Message, parents: dict[tuple[str, str], str]) -> str:
        ref, parent = msg["r"], msg["p"]
        slot = state["refs"].get(ref)
        if slot is None:
            return "orphan"
        if slot["key"] != parent:
            # This row no longer points at that parent: tell it, in case its unsub was lost - unless
            # it is the parent the row left last, whose unsub went out then (and goes out again
            # with any replay of that change): a broadcast crossing that unsub is no sign of loss.
            if parent != slot.get("prev"):
                parents.setdefault((ref, parent), "unsub")
            return "orphan"
        if msg["v"] < slot["v"]:
            return "stale"
        if msg["v"] == slot["v"] and msg["view"] == slot["view"]:
            return "duplicate" if msg["v"] != NO_VERSION else "noop"
        slot["view"] = msg["view"]
        slot["v"] = msg["v"]
        state["v"] = max(state["v"], msg["v"])
        return "applied"

    # ------------------------------------------------------------------ rows
    def _fact_outputs(self, key: str, state: State, source: str, ts: int, rows: list[SinkRow]) -> None:
        version = state["v"]
        for fact, row in zip(self.plan.facts, self._fact_rows(state)):
            if row is not None:
                deleted = 0
            elif state["row"] is not None:
                row, deleted = fact.deleted_row(state["row"]), 1
            else:
                continue
            # Both are new dicts of their own.
            row["_source"], row["_version"], row["_is_deleted"] = source, version, deleted
            rows.append(SinkRow(fact.table, key, row, ts))

    def _dimension_rows(self, key: str, state: State, source: str, ts: int, rows: list[SinkRow]) -> None:
        image = state["row"] or {}
        row = {c: _or_default(image.get(c), t) for c, t in self.column_types.items()}
        row.update(_source=source, _version=state["pos"], _is_deleted=0 if state["live"] else 1)
        mirrored = None
        if self.plan.mirrored:
            # The columns the spec does not declare travel as they are; the sink gives a column the
            # table has and the row lacks (dropped at the source, or NULL) its type's default.
            mirrored = {**{c: v for c, v in image.items() if c not in row}, **row}
        for table in self.plan.dimensions:
            rows.append(SinkRow(table, key, mirrored if table in self.plan.mirrored else row, ts))


class _Tracked:
    """A value at the start of a group, whether any state of the group differed from it, and the
    last one seen."""

    __slots__ = ("start", "dirty", "last")

    def __init__(self, start: Any) -> None:
        self.start = start
        self.dirty = False
        self.last = start

    def see(self, value: Any) -> None:
        self.last = value
        if not self.dirty and value != self.start:
            self.dirty = True


def _order(state: State, msg: Message) -> str:
    """Whether an own change is newer than the state (applied), the same (duplicate) or older (stale).

    Positions order the changes of one stream, with one exception (``cdcapp.debezium.positions``):
    a PostgreSQL transaction open across a snapshot can write a row's change below the snapshot's
    LSN and commit after it. So a streamed change always supersedes a snapshot row, whatever its
    position; and a snapshot row supersedes a streamed state only when it was read after every
    position that state has seen (a later snapshot), never on the replay of the one overridden.
    """
    pos, current = msg["pos"], state["pos"]
    if current != NO_VERSION and bool(msg.get("snap")) != bool(state.get("snap")):
        if not msg.get("snap"):
            return "applied"
        current = max(current, state.get("snap_pos", NO_VERSION))
        return "applied" if pos > current else "duplicate" if pos == current else "stale"
    if pos < current:
        return "stale"
    if pos == current:
        return "duplicate"
    return "applied"


def _copy(state: State) -> State:
    """A copy the group may change: the row and the views are replaced, never changed in place."""
    return {**state, "refs": {name: dict(slot) for name, slot in state["refs"].items()}}


def _or_default(value: Any, column_type: Any) -> Any:
    return column_type.default if value is None or value == UNAVAILABLE_MARK else value


def _merge_unavailable(row: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """PostgreSQL sends unchanged TOASTed values as a placeholder: keep what we had."""
    if previous is None or UNAVAILABLE_MARK not in row.values():
        return row
    return {c: (previous.get(c, v) if v == UNAVAILABLE_MARK else v) for c, v in row.items()}
