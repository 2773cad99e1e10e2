"""The Faust and aiokafka code the corrections were written for, checked at start.

The corrections in this package replace or extend private Faust and aiokafka functions, and one
of them is a rewritten fetch loop. They are right only for the code they were written against.
pyproject pins exact versions; this check also catches an install that ignored the pins (or a
patched build): a worker whose Faust differs refuses to start, naming what changed, rather than
running with corrections that may no longer hold.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect

FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"

#: "module:qualified name" -> the first 16 hex digits of the SHA-256 of its source
EXPECTED = {
    "faust.transport.consumer:Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer:Consumer._add_gap": "4df2573ded7c1c2c",
    "faust.transport.consumer:Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.drivers.aiokafka:Consumer.seek_to_committed": "f1d483b861b0328b",
    # every write of the read offsets is a seek that takes back commit credit (fetch, acks)
    "faust.transport.consumer:Consumer.seek": "b86a9fe05f956b30",
    "faust.transport.consumer:Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._seek_wait": "9d221e816d940467",
    "faust.transport.consumer:Consumer._new_offset": "1d2c7ea89a7ad4f1",
    # seek.seekable: what a recovery round a rebalance overtook seeks with
    "faust.tables.recovery:Recovery._seek_offsets": "19598ca63d94d250",
    "faust.transport.consumer:ThreadDelegateConsumer.seek_wait": "e9db5bbc4ceb2543",
    # bulk.single_message builds the message as this does
    "faust.transport.drivers.aiokafka:Consumer._to_message": "7c24f6511b2fcef7",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer": "c2701bfc3e6f6cad",
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": "0870ec53dea75083",
    "faust.transport.producer:ProducerBuffer._send_pending": "4a9d5f932b56bc68",
    "faust.transport.producer:ProducerBuffer.flush": "26fbebb124ad9c98",
    "faust.transport.drivers.aiokafka:Producer.flush": "36d0cb3615f65b01",
    "faust.transport.drivers.aiokafka:Producer.send": "0b5bd08f52e5e2a9",
    "aiokafka.consumer.fetcher:Fetcher._get_actions_per_node": "1dab2cf937d165d0",
}


class FaustChanged(RuntimeError):
    """The installed Faust or aiokafka is not the code the corrections were written for."""


def fingerprint(target: str) -> str:
    module_name, qualname = target.split(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def check() -> None:
    changed = []
    for target, expected in EXPECTED.items():
        try:
            found = fingerprint(target)
        except (AttributeError, ImportError, OSError, TypeError) as exc:
            found = f"missing ({type(exc).__name__})"
        if found != expected:
            changed.append(f"{target} ({found}, expected {expected})")
    if changed:
        raise FaustChanged(
            f"cdcapp's corrections to Faust (cdcapp/runtime/faust) were written for faust-streaming "
            f"{FAUST_VERSION} and aiokafka {AIOKAFKA_VERSION}, and the installed code differs in: "
            + "; ".join(changed)
            + f". Install the pinned versions (pip install 'faust-streaming=={FAUST_VERSION}' "
            f"'aiokafka=={AIOKAFKA_VERSION}'), or review the corrections against the new code first."
        )
