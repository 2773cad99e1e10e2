"""``cdcapp dlq``'s pure parts: letters read back, grouped by cause, filtered, sent where they belong."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import orjson

from cdcapp.model.messages import SinkRow, encode_batch, partition_of
from cdcapp.tools.dlq import Filter, Letter, destination, group, parse_time


def record(partition: int, offset: int, stage: str, error: str, ts_ms: int, *, topic: str = "oltp.customers",
           source_partition: int | None = 2, value: bytes = b'{"op":"c"}') -> SimpleNamespace:
    body = {"stage": stage, "error": error, "topic": topic, "partition": source_partition, "offset": 9,
            "key_b64": base64.b64encode(b'{"id":1}').decode(), "value_b64": base64.b64encode(value).decode(),
            "ts_ms": ts_ms}
    return SimpleNamespace(partition=partition, offset=offset, value=orjson.dumps(body), timestamp=ts_ms)


def test_letters_group_by_stage_and_cause_with_values_left_out() -> None:
    letters = [Letter.parse(r) for r in (
        record(0, 0, "ingest", "DecodeError: after.quantity: cannot read 3000000000 as Int32", 1_000),
        record(1, 0, "ingest", "DecodeError: after.quantity: cannot read 4000000001 as Int32", 3_000),
        record(1, 1, "ingest", "DecodeError: after.price: cannot read '1.005' as Decimal(12, 2)", 2_000),
        record(2, 0, "sink", "BadSinkRow: unknown table 'dim_x'", 2_500),
    )]
    groups = group(letters)
    assert [(g.stage, g.count) for g in groups] == [("ingest", 2), ("ingest", 1), ("sink", 1)]
    assert groups[0].cause == "DecodeError: after.quantity: cannot read … as Int32"
    assert (groups[0].oldest.id, groups[0].newest.id) == ("0:0", "1:0")
    assert letters[0].decoded()["key"] == {"id": 1} and letters[0].decoded()["value"] == {"op": "c"}


def test_filters_by_stage_error_topic_and_time() -> None:
    letter = Letter.parse(record(0, 0, "sink", "BadSinkRow: unknown table 'dim_x'", parse_time("2026-11-27T10:00:00")))
    assert Filter(stage="sink", error="UNKNOWN TABLE", topic="oltp.customers")(letter)
    assert not Filter(stage="ingest")(letter)
    assert Filter(since_ms=parse_time("2026-11-27"), until_ms=parse_time("2026-11-27T10:00:00+00:00"))(letter)
    assert not Filter(since_ms=parse_time("2026-11-27T10:00:01"))(letter)


def test_replay_goes_back_to_the_partition_that_keeps_each_keys_order() -> None:
    ingest = Letter.parse(record(0, 0, "ingest", "x", 1, source_partition=3))
    assert destination(ingest, lambda topic: 4) == ("oltp.customers", 3)
    row = SinkRow("dim_customer", "postgres|7", {"id": 7}, 0)
    refused = Letter.parse(record(0, 1, "clickhouse", "x", 1, topic="p.sink", source_partition=None,
                                  value=encode_batch([row.encode()])))
    assert destination(refused, lambda topic: 6) == ("p.sink", partition_of(row.sink_key, 6))


def test_the_replay_count_is_read_from_either_form_of_headers() -> None:
    from cdcapp.model.messages import REPLAYS_HEADER, replays_of

    assert replays_of(((REPLAYS_HEADER, b"2"), ("other", b"x"))) == 2
    assert replays_of({REPLAYS_HEADER: b"3"}) == 3
    assert replays_of(None) == replays_of(()) == replays_of([(REPLAYS_HEADER, b"junk")]) == 0
