"""What the spec asks each source to capture, and where each table's changes go.

Every entity names its source table (``source: [schema.]table``, default: the entity's name in the
connection's default schema: PostgreSQL's ``public``, MariaDB's configured database; SQLite has
one schema) and its topic (``topic``, default ``<source topic prefix>.<entity>``). Entity names
are unique, so two tables never share a topic, whatever schemas they come from.
"""

from __future__ import annotations

from cdcapp.config import Settings
from cdcapp.kafka_admin import source_topic
from cdcapp.model.spec import Spec

#: Debezium's incremental snapshots are asked for by a row in this table (cdcapp.tools.backfill)
SIGNAL_TABLE = "debezium_signal"


def default_schema(kind: str, settings: Settings) -> str:
    return "public" if kind == "postgres" else settings.mariadb_db


def source_name(spec: Spec, entity: str, kind: str, settings: Settings) -> str:
    """The entity's table as the source's capture names it: ``schema.table``, or ``table`` for SQLite."""
    schema, table = spec.entities[entity].source_table(entity)
    return table if kind == "sqlite" else f"{schema or default_schema(kind, settings)}.{table}"


def entity_topic(spec: Spec, entity: str, settings: Settings) -> str:
    return spec.entities[entity].topic or source_topic(settings.source_topic_prefix, entity)


def captured(spec: Spec, kind: str, settings: Settings) -> dict[str, str]:
    """Source table (``source_name``) -> topic, for every entity of the spec."""
    return {source_name(spec, name, kind, settings): entity_topic(spec, name, settings) for name in spec.entities}


def signal_table(kind: str, settings: Settings) -> str:
    return f"{default_schema(kind, settings)}.{SIGNAL_TABLE}"


def resolve_tables(spec: Spec, kind: str, settings: Settings, names: list[str]) -> list[str]:
    """``names`` (entities or source tables, as an operator types them) as ``source_name``s; a name
    that is neither raises ``LookupError`` naming what there is."""
    by_entity = {name: source_name(spec, name, kind, settings) for name in spec.entities}
    known = set(by_entity.values())
    by_table = {name.rpartition(".")[2]: name for name in known}
    out = []
    for name in names:
        found = by_entity.get(name) or (name if name in known else None) or by_table.get(name)
        if found is None:
            raise LookupError(f"{name!r} is no entity or table of the spec (entities: {', '.join(by_entity)})")
        out.append(found)
    return out
