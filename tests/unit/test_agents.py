"""The Faust agents in test contexts: the stage agent over source records (joined here, or sent on
to the stage partition another worker holds) and over stage records, with its tables.

Everything the agents hand to the producer (batch records and changelog writes) is captured at
the app's producer; the end-to-end tests cover Kafka.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import orjson
import pytest

from faust.types import TP

from cdcapp.model.messages import change, partition_of, subscription
from cdcapp.runtime import stage as stage_module
from cdcapp.runtime.app import CdcApp
from cdcapp.runtime.metrics import STALE_CHANGES

PARTITIONS = 4


class Captured:
    def __init__(self, app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, int, bytes | None, Any]] = []
        topics = app.pipeline.topics

        async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                       timestamp: Any, headers: Any) -> asyncio.Future:
            self.sent.append((topic, partition, key, orjson.loads(value) if value else value))
            delivered: asyncio.Future = asyncio.get_running_loop().create_future()
            delivered.set_result(SimpleNamespace(offset=len(self.sent)))
            return delivered

        async def send_records(topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> Any:
            for key, value in records:
                delivered = await send(topic, key, value, partition, None, None)
            return delivered

        async def send_dead_letter(*, key: bytes, value: bytes, **_: Any) -> None:
            self.sent.append((topics.dlq.get_topic_name(), 0, key, orjson.loads(value)))

        monkeypatch.setattr(app.producer, "send", send)
        monkeypatch.setattr(app.producer, "send_records", send_records)
        monkeypatch.setattr(topics.dlq, "send", send_dead_letter)

    def records(self, topic: str) -> list[tuple[int, Any]]:
        return [(partition, value) for t, partition, _, value in self.sent if t == topic]

    async def settled(self) -> None:
        """Until the agent has handled what was put: its batch is handed on after ``put`` returns."""
        for _ in range(500):
            count = len(self.sent)
            await asyncio.sleep(0.01)
            if count and len(self.sent) == count:
                return
        raise AssertionError("the agent sent nothing")

    async def until(self, what: str, check: Any) -> None:
        """Until ``check()`` holds: the agent handles records a batch at a time."""
        for _ in range(500):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never: {what}")


def hold(cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch, *partitions: int) -> None:
    """The stage partitions this worker holds, as its consumer's assignment, all read to their end."""
    stage = cdc_app.pipeline.topics.stage_name

    async def empty(*tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    monkeypatch.setattr(cdc_app.consumer, "assignment", lambda: {TP(stage, p) for p in partitions})
    monkeypatch.setattr(cdc_app.consumer, "highwaters", empty)


@pytest.fixture()
def captured(cdc_app: CdcApp, monkeypatch: pytest.MonkeyPatch) -> Captured:
    capture = Captured(cdc_app, monkeypatch)
    hold(cdc_app, monkeypatch, *range(PARTITIONS))  # one worker
    cdc_app.flow_control.resume()
    return capture


def debezium_row(table: str, after: dict | None, lsn: int, op: str = "c") -> bytes:
    """A PostgreSQL change event of ``table`` as Debezium writes it (without its schema)."""
    return orjson.dumps({
        "before": None, "after": after, "op": op, "ts_ms": 1_700_000_000_100,
        "source": {"connector": "postgresql", "name": "postgres", "table": table, "lsn": lsn,
                   "ts_ms": 1_700_000_000_000, "snapshot": "false"},
    })


def debezium_customer(op: str, after: dict | None, lsn: int) -> bytes:
    return debezium_row("customers", after, lsn, op)


CUSTOMER = {"id": 7, "email": "a@b", "name": "Ann", "country": "FR", "city": "Lyon",
            "created_at": "2024-01-01T00:00:00Z"}
ROW = {**CUSTOMER, "created_at": "2024-01-01 00:00:00"}


@asynccontextmanager
async def stage_agent(cdc_app: CdcApp) -> AsyncIterator[Any]:
    """The stage agent's test context, whose ``put`` is a record on the stage topic: the agent reads
    every source topic and the stage topic, and Faust's test context names a message's topic only
    for an agent of one topic."""
    async with cdc_app.agents["cdcapp.stage"].test_context() as context:
        with patch.object(context, "_get_strtopic", lambda _channel: cdc_app.pipeline.topics.stage_name):
            yield context


async def put_source(cdc_app: CdcApp, context: Any, entity: str, key: bytes, value: bytes | None) -> None:
    """A record on the entity's source topic."""
    topic = cdc_app.pipeline.topics.sources[entity]
    with patch.object(context, "_get_strtopic", lambda _channel: topic):
        await context.put(key=key, value=value)


async def test_a_change_whose_partition_another_worker_holds_goes_to_that_stage_partition(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    partition = partition_of("postgres|7", PARTITIONS)
    hold(cdc_app, monkeypatch, *(p for p in range(PARTITIONS) if p != partition))
    async with stage_agent(cdc_app) as context:
        await put_source(cdc_app, context, "customers", b'{"id":7}', debezium_customer("c", CUSTOMER, 4242))
        await captured.settled()
    assert captured.records("cdcapp.stage") == [
        (partition, [change("postgres|7", "c", ROW, 4242, 1_700_000_000_000) | {"e": "customers"}])]
    assert captured.records("cdcapp.sink") == [], "joined by the worker that holds the partition"


async def test_a_change_whose_partition_this_worker_holds_is_joined_at_once(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    partition = partition_of("postgres|70", PARTITIONS)
    hold(cdc_app, monkeypatch, partition)
    async with stage_agent(cdc_app) as context:
        await put_source(cdc_app, context, "customers", b'{"id":70}', debezium_customer("c", {**CUSTOMER, "id": 70}, 4242))
        await captured.settled()
    assert captured.records("cdcapp.stage") == []
    (_, rows), = captured.records("cdcapp.sink")
    assert [(table, key, row["city"], row["_version"]) for table, key, row, _ in rows] == [
        ("dim_customer", "postgres|70", "Lyon", 4242)]
    assert cdc_app.pipeline.stage_tables["customers"].store(partition).get("postgres|70")["pos"] == 4242


async def test_ingest_skips_tombstones_and_dead_letters_garbage(cdc_app: CdcApp, captured: Captured) -> None:
    async with stage_agent(cdc_app) as context:
        await put_source(cdc_app, context, "customers", b'{"id":7}', None)
        await put_source(cdc_app, context, "customers", b'{"id":7}', b"{not json")
        await captured.settled()
    (topic, _, _, letter), = captured.sent
    assert topic == "cdcapp.dlq"
    assert letter["stage"] == "ingest"
    assert "DecodeError" in letter["error"]
    assert base64.b64decode(letter["value_b64"]) == b"{not json"


def debezium_item(item_id: int, quantity: object, price: object) -> bytes:
    return debezium_row("order_items", {"id": item_id, "order_id": 1, "product_id": 1, "quantity": quantity,
                                        "price": price}, 100 + item_id)


async def test_values_clickhouse_cannot_hold_are_dead_lettered_by_name_and_the_rest_flows(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    hold(cdc_app, monkeypatch)  # the valid change then goes to the stage topic, as it was decoded
    async with stage_agent(cdc_app) as context:
        await put_source(cdc_app, context, "order_items", b'{"id":1}', debezium_item(1, 3_000_000_000, "1.00"))
        await put_source(cdc_app, context, "order_items", b'{"id":2}', debezium_item(2, 1, "12345678901.00"))  # 13 digits
        await put_source(cdc_app, context, "order_items", b'{"id":3}', debezium_item(3, 1, "1.005"))
        await put_source(cdc_app, context, "order_items", b'{"id":4}', debezium_item(4, 2, "9.99"))
        await captured.settled()
    letters = [value for _, value in captured.records("cdcapp.dlq")]
    expected = [
        "DecodeError: after.quantity: cannot read 3000000000 as Int32: 3000000000 is not a valid Int32: "
        "out of range -2147483648..2147483647",
        "DecodeError: after.price: cannot read '12345678901.00' as Decimal(12, 2): Decimal('12345678901.00') is not a "
        "valid Decimal(12, 2): more than 12 digits",
        "DecodeError: after.price: cannot read '1.005' as Decimal(12, 2): Decimal('1.005') is not a valid Decimal(12, 2): "
        "more than 2 decimal places (it would be rounded)",
    ]
    hint = "if the source column's type changed, change the spec to match, restart the workers and replay"
    assert [letter["error"].split(" (the spec declares")[0] for letter in letters] == expected
    assert all(hint in letter["error"] for letter in letters)
    (_, batch), = captured.records("cdcapp.stage")
    assert [(m["k"], m["row"]["quantity"], m["row"]["price"]) for m in batch] == [("postgres|4", 2, "9.99")]


def stage_record(entity: str, *messages: dict) -> bytes:
    return orjson.dumps([message | {"e": entity} for message in messages])


async def test_stage_stores_state_emits_the_dimension_and_drops_stale_changes(
        cdc_app: CdcApp, captured: Captured) -> None:
    partition = partition_of("postgres|7", PARTITIONS)
    async with stage_agent(cdc_app) as context:
        await context.put(value=stage_record("customers", change("postgres|7", "c", ROW, 10, 1)), partition=partition)
        await context.put(value=stage_record("customers", change("postgres|7", "u", {**ROW, "city": "Paris"}, 5, 1)),
                          partition=partition)
        await captured.settled()
    rows = [row for _, record in captured.records("cdcapp.sink") for row in record]
    assert len(rows) == 1, "the older change must not produce a row"
    table, key, row, _ = rows[0]
    assert (table, key, row["city"], row["_version"]) == ("dim_customer", "postgres|7", "Lyon", 10)
    state = cdc_app.pipeline.stage_tables["customers"].store(partition).get("postgres|7")
    assert state["pos"] == 10 and state["row"]["city"] == "Lyon"
    changelog = [value for topic, _, key, value in captured.sent
                 if topic == "cdcapp-unit-customers-state-changelog" and key == b"postgres|7"]
    assert len(changelog) == 1 and changelog[0]["pos"] == 10


async def test_dropped_changes_are_counted_by_source_and_reason_and_a_rewind_is_logged(
        cdc_app: CdcApp, captured: Captured, caplog: pytest.LogCaptureFixture) -> None:
    def dropped(reason: str) -> float:
        return STALE_CHANGES.labels("postgres", "customers", reason)._value.get()

    before = dropped("older"), dropped("rewound")
    partition = partition_of("postgres|8", PARTITIONS)
    async with stage_agent(cdc_app) as context:
        await context.put(value=stage_record("customers", change("postgres|8", "c", {**ROW, "id": 8}, 1000, 1),
                                             change("postgres|8", "u", {**ROW, "id": 8}, 900, 1),
                                             change("postgres|8", "u", {**ROW, "id": 8}, 3, 1)), partition=partition)
        await captured.settled()
    assert (dropped("older") - before[0], dropped("rewound") - before[1]) == (1, 1)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "change of customers postgres|8 at position 3 dropped: its row is already at 1000. If the source's "
        "positions restarted, see docs/operations.md"]


async def test_a_subscription_is_answered_with_the_parents_projection(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    partition = partition_of("postgres|3", PARTITIONS)
    assert partition_of("postgres|11", PARTITIONS) != partition
    hold(cdc_app, monkeypatch, partition)  # the child's partition is another worker's
    product = {"id": 3, "name": "Lamp", "category": "home", "price": "9.90", "created_at": "2024-01-01 00:00:00"}
    async with stage_agent(cdc_app) as context:
        await context.put(value=stage_record("products", change("postgres|3", "c", product, 1, 1)), partition=partition)
        await context.put(value=stage_record("products", subscription("sub", "postgres|3", "order_items", "product",
                                                          "postgres|11", 2)), partition=partition)
        await captured.settled()
    replies = captured.records("cdcapp.stage")
    assert replies == [(partition_of("postgres|11", PARTITIONS), [
        {"t": "info", "k": ["postgres|11"], "r": "product", "p": "postgres|3",
         "view": {"row": {"name": "Lamp", "category": "home"}, "refs": {}}, "v": 1, "ts": 2, "e": "order_items"}])], \
        "the price is no fact's column: the view leaves it out"
    store = cdc_app.pipeline.stage_tables["products"].store(partition)
    assert list(store.children("postgres|3")) == [("order_items", "product", "postgres|11")]


async def test_a_stage_message_for_no_entity_of_the_spec_is_dead_lettered_and_the_rest_of_its_record_flows(
        cdc_app: CdcApp, captured: Captured) -> None:
    partition = partition_of("postgres|9", PARTITIONS)
    record = orjson.dumps([change("postgres|9", "c", {**ROW, "id": 9}, 10, 1) | {"e": "customers"},
                           change("postgres|9", "c", {"id": 9}, 10, 1) | {"e": "invoices"},
                           change("postgres|9", "c", {"id": 9}, 10, 1)])
    async with stage_agent(cdc_app) as context:
        await context.put(value=record, partition=partition)
        await captured.settled()
    (_, letter), = captured.records("cdcapp.dlq")
    assert letter["stage"] == "stage"
    assert letter["error"] == "stage messages for no entity of the spec (customers, order_items, orders, products)"
    assert [m.get("e") for m in orjson.loads(base64.b64decode(letter["value_b64"]))] == ["invoices", None]
    rows = [row for _, record in captured.records("cdcapp.sink") for row in record]
    assert [(table, key) for table, key, _, _ in rows] == [("dim_customer", "postgres|9")]


async def put_order_with_item(cdc_app: CdcApp, context: Any, product: int, order: int, item: int) -> None:
    """Customer 7, and a product, an order of it and an item of both, each created once."""
    await put_source(cdc_app, context, "customers", b'{"id":7}', debezium_customer("c", CUSTOMER, 10))
    await put_source(cdc_app, context, "products", b"{}", debezium_row("products", {
        "id": product, "name": "Lamp", "category": "home", "price": "9.90", "created_at": "2024-01-01T00:00:00Z"}, 11))
    await put_source(cdc_app, context, "orders", b"{}", debezium_row("orders", {
        "id": order, "customer_id": 7, "order_date": "2024-01-02T00:00:00Z", "status": "paid", "total": "19.80"}, 12))
    await put_source(cdc_app, context, "order_items", b"{}", debezium_row("order_items", {
        "id": item, "order_id": order, "product_id": product, "quantity": 2, "price": "9.90"}, 13))


async def test_messages_between_stages_of_partitions_this_worker_holds_are_applied_in_the_same_batch(
        cdc_app: CdcApp, captured: Captured) -> None:
    async with stage_agent(cdc_app) as context:
        await put_order_with_item(cdc_app, context, product=3, order=5, item=11)
        await captured.until("the item's fact row", lambda: any(
            row[0] == "fact_order" for _, record in captured.records("cdcapp.sink") for row in record))
    assert captured.records("cdcapp.stage") == [], "subs and infos never left the worker"
    facts = [(key, row["customer_city"], row["product_name"], row["_version"])
             for _, record in captured.records("cdcapp.sink") for table, key, row, _ in record if table == "fact_order"]
    assert facts[-1] == ("postgres|11", "Lyon", "Lamp", 13)
    store = cdc_app.pipeline.stage_tables["products"].store(partition_of("postgres|3", PARTITIONS))
    assert list(store.children("postgres|3")) == [("order_items", "product", "postgres|11")]


async def test_messages_for_a_partition_not_caught_up_since_the_rebalance_go_through_the_stage_topic_tracked(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    behind = partition_of("postgres|21", PARTITIONS)  # the product's: its older records are not handled yet
    assert behind not in (partition_of("postgres|25", PARTITIONS), partition_of("postgres|24", PARTITIONS))
    stage = cdc_app.pipeline.topics.stage_name

    async def ends(*tps: TP) -> dict[TP, int]:
        return {tp: 5 if tp.partition == behind else 0 for tp in tps}

    monkeypatch.setattr(cdc_app.consumer, "highwaters", ends)
    monkeypatch.setattr(cdc_app.consumer, "_committed_offset", {})
    await cdc_app.on_partitions_assigned.send(assigned=set())  # what the agent caught up on is forgotten
    async with stage_agent(cdc_app) as context:
        await put_order_with_item(cdc_app, context, product=21, order=25, item=24)
        await captured.until("the item's sub to its product", lambda: any(
            m["t"] == "sub" for _, record in captured.records(stage) for m in record))
        await captured.settled()
    sent = [m for partition, record in captured.records(stage) for m in record]
    assert {(m["t"], m["e"], m["k"]) for m in sent} == {("chg", "products", "postgres|21"),
                                                         ("sub", "products", "postgres|21")}
    assert all(m.get("via") for m in sent), "tracked, so that the key's next messages follow it"
    facts = [key for _, record in captured.records("cdcapp.sink") for table, key, _, _ in record if table == "fact_order"]
    assert "postgres|24" not in facts, "the item waits for its product"


async def test_a_batch_carrying_a_backlog_sends_its_messages_between_stages_through_the_stage_topic_tracked(
        cdc_app: CdcApp, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_module, "BACKLOG_MESSAGES", 0)  # every batch is a backlog
    async with stage_agent(cdc_app) as context:
        await put_order_with_item(cdc_app, context, product=31, order=33, item=30)
        await captured.until("the item's subs", lambda: sum(
            m["t"] == "sub" and m["ck"] == "postgres|30" for _, record in captured.records("cdcapp.stage")
            for m in record) == 2)
        await captured.settled()
    sent = [m for _, record in captured.records("cdcapp.stage") for m in record]
    assert all(m.get("via") for m in sent), "tracked, so that the key's next messages follow it"
    assert {(m["t"], m["e"], m["k"]) for m in sent if m["t"] == "sub" and m["ck"] == "postgres|30"} == {
        ("sub", "orders", "postgres|33"), ("sub", "products", "postgres|31")}
