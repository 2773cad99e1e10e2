"""Faust web views: a status page, per-key table state (routed to the owning worker), and a
read-only query endpoint on the worker's ClickHouse target (the only way into an embedded chdb
while its worker runs).

``/sql/`` runs one read-only statement over the pipeline's database alone
(``cdcapp.clickhouse.readonly``). With ``CDCAPP_WEB_TOKEN`` set it requires
``Authorization: Bearer <token>``; without one it answers only when the web server binds a
loopback address, so that a worker published on a network never serves it unauthenticated.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from cdcapp.clickhouse.client import ClickHouse, ClickHouseUrl
from cdcapp.clickhouse.readonly import Refused
from cdcapp.model.messages import partition_of
from cdcapp.model.spec import Spec
from cdcapp.runtime.live import SAMPLE_EVERY_S, Live
from cdcapp.runtime.sink import EventSink
from cdcapp.runtime.tables import StageTables

MAX_CHILDREN_SHOWN = 100


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sql_refusal(authorization: str | None, token: str | None, web_host: str) -> str | None:
    """Why a /sql/ request may not run (None: it may)."""
    if token:
        if authorization is None or not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            return "a valid 'Authorization: Bearer <CDCAPP_WEB_TOKEN>' header is required"
        return None
    if not is_loopback(web_host):
        return f"set CDCAPP_WEB_TOKEN: /sql/ needs a token when the web server binds {web_host}"
    return None


PAGE = (Path(__file__).parent / "status.html").read_bytes()


def register(app: faust.App, spec: Spec, tables: dict[str, StageTables], sink: EventSink,
             clickhouse: ClickHouse, partitions: int, live: Live, token: str | None = None) -> None:
    def worker_status() -> dict[str, Any]:
        assignment = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.assignor.assigned_actives())
        return {
            "app": app.conf.id,
            "worker": f"{app.conf.web_host}:{app.conf.web_port}",
            "clickhouse": ClickHouseUrl.parse(clickhouse.url).redacted(),
            "tables": [d.table for d in spec.dimensions] + [f.table for f in spec.facts],
            "assigned_partitions": assignment,
            "source_epochs": {source: epochs[-1].number for source, epochs in app.pipeline.epochs.by_source.items()},
            "sink": {
                "buffered_rows": len(sink.buffer),
                "rows_inserted": sink.rows_inserted,
                "last_flush_age_s": round(sink.clock() - sink.last_flush_at, 3) if sink.last_flush_at else None,
                "last_error": sink.last_error,
            },
        }

    @app.page("/status/")
    async def status(web: View, request: Request) -> Response:
        return web.json(worker_status())

    @app.page("/status/live/")
    async def status_live(web: View, request: Request) -> Response:
        live.viewed()
        body = {**worker_status(), **live.view()}
        return web.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/")
    async def page(web: View, request: Request) -> Response:
        return web.bytes(PAGE, content_type="text/html")

    @app.timer(interval=SAMPLE_EVERY_S, name="cdcapp.status-page")
    async def sample() -> None:
        live.sample()
        if live.watched:
            await live.refresh()

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/sql/")
    async def sql(web: View, request: Request) -> Response:
        refusal = sql_refusal(request.headers.get("Authorization"), token, app.conf.web_host)
        if refusal:
            return web.json({"error": refusal}, status=403)
        try:
            rows = await clickhouse.read(request.query.get("q", ""))
        except Refused as exc:
            return web.json({"error": f"refused: {exc}"}, status=400)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, not raised in the worker
            return web.json({"error": f"{type(exc).__name__}: {exc}"}, status=500)
        return web.bytes(orjson.dumps({"data": rows}, default=str), content_type="application/json")

    for entity, entity_tables in tables.items():
        _register_state_view(app, entity, entity_tables, partitions)


def _register_state_view(app: faust.App, entity: str, entity_tables: StageTables, partitions: int) -> None:
    @app.page(f"/state/{entity}/{{key}}/", name=f"state-{entity}")
    @app.table_route(table=entity_tables.state.table, match_info="key")
    async def state(web: View, request: Request, key: str) -> Response:
        store = entity_tables.store(partition_of(key, partitions))
        children = list(itertools.islice(store.children(key), MAX_CHILDREN_SHOWN))
        body: dict[str, Any] = {
            "entity": entity,
            "key": key,
            "state": store.get(key),
            "children": [{"entity": c, "ref": r, "key": k} for c, r, k in children],
            "children_shown_at_most": MAX_CHILDREN_SHOWN,
        }
        return web.json(body)
