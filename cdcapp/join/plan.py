"""What each entity's stage must keep and tell, derived once from the spec.

A fact column is a path of references from the fact's root entity (``order.customer.country``
from ``order_items``). Walking every path gives, per entity:

- ``join_refs``: the references it follows - it subscribes to those parents and keeps their
  views. A reference no fact reaches through is not followed at all.
- ``projection`` and ``exported_refs``: what its children need of it - the columns of its own
  row and the views of its parents that some descendant fact reads. Its *view* carries exactly
  that, so a change to anything else (a product's price, a customer's email) is a dimension row
  and nothing more: no message to any child.
- ``children``: the (child entity, reference) pairs that subscribe to it.

An entity's view exists when its row is live and every parent it follows has a view: the inner
join along the fact paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal
from typing import Any, Callable

from cdcapp.model.spec import Ref, Spec, compile_measure
from cdcapp.model.types import ColumnType, parse_type


@dataclass(frozen=True)
class FactShape:
    table: str
    #: (output column, refs from the root, column of the entity the refs lead to)
    paths: tuple[tuple[str, tuple[str, ...], str, ColumnType], ...]
    measures: tuple[tuple[str, Callable[[dict[str, Any]], Decimal], ColumnType], ...]
    #: output column -> root key column, for the key of a deleted row
    key_paths: tuple[tuple[str, str], ...]

    def row(self, own: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
        """The fact row from the root's own row and the views of the parents it follows."""
        out: dict[str, Any] = {}
        for name, path, column, _ in self.paths:
            if not path:
                out[name] = own[column]
                continue
            node = refs[path[0]]
            for ref in path[1:]:
                node = node["refs"][ref]
            out[name] = node["row"][column]
        for name, compute, column_type in self.measures:
            out[name] = column_type.computed(compute(out))
        return out

    @cached_property
    def _filler(self) -> dict[str, Any]:
        out = {name: column_type.default for name, _, _, column_type in self.paths}
        out.update({name: column_type.default for name, _, column_type in self.measures})
        return out

    def deleted_row(self, own: dict[str, Any]) -> dict[str, Any]:
        """Only the key matters in a deleted row; the rest is filler of the right type."""
        out = dict(self._filler)
        for name, column in self.key_paths:
            out[name] = own[column]
        return out


@dataclass
class EntityPlan:
    name: str
    key: list[str]
    columns: dict[str, ColumnType]
    join_refs: dict[str, Ref] = field(default_factory=dict)
    projection: list[str] = field(default_factory=list)
    exported_refs: list[str] = field(default_factory=list)
    children: list[tuple[str, str]] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)
    #: dimension tables that mirror the source table: every column of the row image, not only the spec's
    mirrored: set[str] = field(default_factory=set)
    facts: list[FactShape] = field(default_factory=list)
    #: own columns its facts read (what, with its parents' views, a fact row is made of)
    fact_columns: list[str] = field(default_factory=list)


def _add(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def plan(spec: Spec) -> dict[str, EntityPlan]:
    plans = {name: EntityPlan(name, list(e.key), spec.column_types(name)) for name, e in spec.entities.items()}
    for dim in spec.dimensions:
        plans[dim.entity].dimensions.append(dim.table)
        if dim.columns == "all":
            plans[dim.entity].mirrored.add(dim.table)
    for fact in spec.facts:
        paths = []
        for name, path in fact.columns.items():
            refs, column, column_type = spec.resolve_path(fact.entity, path)
            paths.append((name, tuple(refs), column, column_type))
            if not refs:
                _add(plans[fact.entity].fact_columns, column)
            entity = fact.entity
            for depth, ref_name in enumerate(refs):
                ref = spec.entities[entity].refs[ref_name]
                plans[entity].join_refs[ref_name] = ref
                parent = plans[ref.entity]
                _add(parent.children, (entity, ref_name))
                if depth + 1 < len(refs):
                    _add(parent.exported_refs, refs[depth + 1])
                else:
                    _add(parent.projection, column)
                entity = ref.entity
        root = spec.entities[fact.entity]
        measures = tuple(
            (name, compile_measure(m.expr, set(fact.columns)), parse_type(m.type)) for name, m in fact.measures.items()
        )
        key_paths = tuple((name, path) for name, path in fact.columns.items() if path in root.key)
        plans[fact.entity].facts.append(FactShape(fact.table, tuple(paths), measures, key_paths))
    return plans
