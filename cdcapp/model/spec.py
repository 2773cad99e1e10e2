"""The pipeline spec: which OLTP tables feed which ClickHouse tables, and how they join.

A spec declares *entities* (source tables with a primary key, typed columns and references to
other entities), *dimensions* (an entity's own columns, one row per source row) and *facts*
(one row per row of a root entity, with columns pulled along a path of references - inner
joins - and measures computed from them). The seed's e-commerce model is
``cdcapp/model/specs/ecommerce.yaml``; a user's model is another such file, no code change.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdcapp.model.types import ColumnType, parse_type

DEFAULT_SPEC = Path(__file__).parent / "specs" / "ecommerce.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ref(_Frozen):
    entity: str
    columns: list[str] = Field(min_length=1, description="FK columns, in the order of the parent's key")


class Entity(_Frozen):
    key: list[str] = Field(default_factory=lambda: ["id"], min_length=1)
    columns: dict[str, str]
    refs: dict[str, Ref] = Field(default_factory=dict)
    topic: str | None = Field(default=None, description="Source topic; default <source_topic_prefix>.<name>")
    source: str | None = Field(
        default=None, pattern=r"^[^.\s\"`]+(\.[^.\s\"`]+)?$",
        description="The source table, [schema.]table (no quotes, dots or spaces in either); default: the "
        "entity's name, in the connection's default schema.")

    def source_table(self, name: str) -> tuple[str | None, str]:
        """(schema or None, table) of the entity called ``name``."""
        schema, _, table = (self.source or name).rpartition(".")
        return schema or None, table


class Dimension(_Frozen):
    table: str
    entity: str
    columns: Literal["spec", "all"] = Field(
        default="spec", description="'all': mirror the source table, columns it gains later included (schema "
        "sync); 'spec': exactly the entity's declared columns.")


class Measure(_Frozen):
    expr: str
    type: str


class Fact(_Frozen):
    table: str
    entity: str
    columns: dict[str, str] = Field(description="output column -> path: [ref.]*column")
    measures: dict[str, Measure] = Field(default_factory=dict)


class Spec(_Frozen):
    database: str | None = Field(
        default=None, description="The ClickHouse database; default: one named after the pipeline's app id "
        "(config.Settings.database).")
    entities: dict[str, Entity]
    dimensions: list[Dimension] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        for name, entity in self.entities.items():
            for column, type_name in entity.columns.items():
                _named(f"entity {name}: column {column}", parse_type, type_name)
            missing = [c for c in entity.key if c not in entity.columns]
            if missing:
                raise ValueError(f"entity {name}: key columns {missing} are not among its columns")
            for ref_name, ref in entity.refs.items():
                parent = self.entities.get(ref.entity)
                if parent is None:
                    raise ValueError(f"entity {name}: ref {ref_name} names unknown entity {ref.entity}")
                if len(ref.columns) != len(parent.key):
                    raise ValueError(f"entity {name}: ref {ref_name} has {len(ref.columns)} columns, "
                                     f"{ref.entity} has a {len(parent.key)}-column key")
                bad = [c for c in ref.columns if c not in entity.columns]
                if bad:
                    raise ValueError(f"entity {name}: ref {ref_name} columns {bad} are not its columns")
        self._check_acyclic()
        for dim in self.dimensions:
            if dim.entity not in self.entities:
                raise ValueError(f"dimension {dim.table}: unknown entity {dim.entity}")
        for fact in self.facts:
            if fact.entity not in self.entities:
                raise ValueError(f"fact {fact.table}: unknown entity {fact.entity}")
            for column, path in fact.columns.items():
                _named(f"fact {fact.table}: column {column}", self.resolve_path, fact.entity, path)
            for name, measure in fact.measures.items():
                _named(f"fact {fact.table}: measure {name}", parse_type, measure.type)
                _named(f"fact {fact.table}: measure {name}", compile_measure, measure.expr, set(fact.columns))
        tables = [d.table for d in self.dimensions] + [f.table for f in self.facts]
        if len(tables) != len(set(tables)):
            raise ValueError(f"table names must be unique: {tables}")
        return self

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 1:
                raise ValueError(f"references form a cycle: {' -> '.join(trail + [name])}")
            if state.get(name) == 2:
                return
            state[name] = 1
            for ref in self.entities[name].refs.values():
                visit(ref.entity, trail + [name])
            state[name] = 2

        for name in self.entities:
            visit(name, [])

    def resolve_path(self, entity: str, path: str) -> tuple[list[str], str, ColumnType]:
        """'order.customer.country' from order_items -> (['order', 'customer'], 'country', String)."""
        *refs, column = path.split(".")
        current = entity
        for ref_name in refs:
            ref = self.entities[current].refs.get(ref_name)
            if ref is None:
                raise ValueError(f"path {path!r}: {current} has no ref {ref_name!r}")
            current = ref.entity
        type_name = self.entities[current].columns.get(column)
        if type_name is None:
            raise ValueError(f"path {path!r}: {current} has no column {column!r}")
        return refs, column, parse_type(type_name)

    @cached_property
    def children(self) -> dict[str, list[tuple[str, str]]]:
        """entity -> [(child entity, ref name)] of the refs that point at it."""
        out: dict[str, list[tuple[str, str]]] = {name: [] for name in self.entities}
        for name, entity in self.entities.items():
            for ref_name, ref in entity.refs.items():
                out[ref.entity].append((name, ref_name))
        return out

    def column_types(self, entity: str) -> dict[str, ColumnType]:
        return {c: parse_type(t) for c, t in self.entities[entity].columns.items()}


def _named(where: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, its ValueError prefixed with where in the spec it was found."""
    try:
        return check(*args)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class SpecError(ValueError):
    """A spec that cannot be used, said in one line: the file, where in it, what is wrong."""


def load_spec(path: Path | None = None) -> Spec:
    source = path or DEFAULT_SPEC
    try:
        with open(source, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise SpecError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(f"{source}: {where}not YAML: {getattr(exc, 'problem', None) or exc}") from None
    try:
        return Spec.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        location = ".".join(str(part) for part in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(f"{source}: {location + ': ' if location else ''}{message}{more}") from None


_BINOPS: dict[type, Callable[[Decimal, Decimal], Decimal]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
}


def compile_measure(expr: str, names: set[str]) -> Callable[[dict[str, Any]], Decimal]:
    """A measure is arithmetic (+ - *) over fact columns and numbers, computed in exact decimals."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"measure {expr!r}: {exc.msg}") from None

    def build(node: ast.AST) -> Callable[[dict[str, Any]], Decimal]:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op, left, right = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda row: op(left(row), right(row))
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"measure {expr!r}: unknown column {node.id!r}")
            column = node.id
            return lambda row: Decimal(str(row[column]))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            constant = Decimal(str(node.value))
            return lambda row: constant
        raise ValueError(f"measure {expr!r}: only + - * over columns and numbers are allowed")

    return build(tree)
