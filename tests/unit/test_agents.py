"""The Faust agents in test contexts: decode -> stage topic, and a stage over its tables.

Sends to other topics are captured at the topic object; the end-to-end tests cover Kafka.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from cdcapp.runtime.app import CdcApp


class Captured:
    def __init__(self, app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []
        topics = app.pipeline.topics

        async def send(topic: str, key: bytes, value: bytes) -> None:
            self.sent.append((topic, key, orjson.loads(value)))

        async def send_dead_letter(*, key: bytes, value: bytes, **_: Any) -> None:
            await send(topics.dlq.get_topic_name(), key, value)

        monkeypatch.setattr(topics, "send", send)
        monkeypatch.setattr(topics.dlq, "send", send_dead_letter)


@pytest.fixture()
def captured(cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> Captured:
    capture = Captured(cdc_app, monkeypatch)
    cdc_app.flow_control.resume()
    return capture


def debezium_customer(op: str, after: dict | None, lsn: int) -> bytes:
    return orjson.dumps({
        "before": None, "after": after, "op": op, "ts_ms": 1_700_000_000_100,
        "source": {"connector": "postgresql", "name": "postgres", "table": "customers", "lsn": lsn,
                   "ts_ms": 1_700_000_000_000, "snapshot": "false"},
    })


CUSTOMER = {"id": 7, "email": "a@b", "name": "Ann", "country": "FR", "city": "Lyon",
            "created_at": "2024-01-01T00:00:00Z"}


async def test_ingest_rekeys_a_debezium_change_onto_the_stage_topic(cdc_app: CdcApp, captured: Captured) -> None:
    agent = cdc_app.agents["cdcapp.ingest.customers"]
    async with agent.test_context() as context:
        await context.put(key=b'{"id":7}', value=debezium_customer("c", CUSTOMER, 4242))
    (topic, key, message), = captured.sent
    assert topic == "cdcapp.stage.customers"
    assert key == b"postgres|7"
    assert message == {"t": "chg", "op": "c", "pos": 4242, "ts": 1_700_000_000_000,
                       "row": {**CUSTOMER, "created_at": "2024-01-01 00:00:00"}}


async def test_ingest_skips_tombstones_and_dead_letters_garbage(cdc_app: CdcApp, captured: Captured) -> None:
    agent = cdc_app.agents["cdcapp.ingest.customers"]
    async with agent.test_context() as context:
        await context.put(key=b'{"id":7}', value=None)
        await context.put(key=b'{"id":7}', value=b"{not json")
    (topic, key, letter), = captured.sent
    assert topic == "cdcapp.dlq"
    assert letter["stage"] == "ingest"
    assert "DecodeError" in letter["error"]
    assert base64.b64decode(letter["value_b64"]) == b"{not json"


async def test_stage_stores_state_emits_the_dimension_and_drops_stale_changes(cdc_app: CdcApp, captured: Captured) -> None:
    agent = cdc_app.agents["cdcapp.stage.customers"]
    row = {**CUSTOMER, "created_at": "2024-01-01 00:00:00"}
    async with agent.test_context() as context:
        await context.put(key=b"postgres|7", value=orjson.dumps({"t": "chg", "op": "c", "row": row, "pos": 10, "ts": 1}))
        await context.put(key=b"postgres|7", value=orjson.dumps(
            {"t": "chg", "op": "u", "row": {**row, "city": "Paris"}, "pos": 5, "ts": 1}))
    sink_rows = [m for t, _, m in captured.sent if t == "cdcapp.sink"]
    assert len(sink_rows) == 1, "the older change must not produce a row"
    assert sink_rows[0]["table"] == "dim_customer"
    assert sink_rows[0]["row"]["city"] == "Lyon"
    assert sink_rows[0]["row"]["_version"] == 10
    state = orjson.loads(cdc_app.pipeline.stage_tables["customers"].state[b"postgres|7"])
    assert state["pos"] == 10 and state["row"]["city"] == "Lyon"


async def test_a_subscription_is_answered_with_the_parent_view(cdc_app: CdcApp, captured: Captured) -> None:
    agent = cdc_app.agents["cdcapp.stage.products"]
    product = {"id": 3, "name": "Lamp", "category": "home", "price": "9.90", "created_at": "2024-01-01 00:00:00"}
    async with agent.test_context() as context:
        await context.put(key=b"postgres|3", value=orjson.dumps({"t": "chg", "op": "c", "row": product, "pos": 1, "ts": 1}))
        await context.put(key=b"postgres|3", value=orjson.dumps(
            {"t": "sub", "c": "order_items", "r": "product", "k": "postgres|11", "ts": 2}))
    replies = [(k, m) for t, k, m in captured.sent if t == "cdcapp.stage.order_items"]
    assert replies == [(b"postgres|11", {"t": "info", "r": "product", "p": "postgres|3",
                                         "view": {"row": product, "refs": {}}, "v": 1, "ts": 2})]
    assert orjson.loads(cdc_app.pipeline.stage_tables["products"].subscribers[b"postgres|3"]) == {
        "order_items.product": ["postgres|11"]}
