"""The benchmark's bare Faust agent: it only counts the messages of some topics.

Its rate is Faust's own ceiling on this machine, before any work (``cdcapp bench`` runs it over
the topics the pipeline drains). Run as ``python -m cdcapp.runtime.bare_agent`` with
``BARE_TOPICS`` (comma-separated), ``BARE_EXPECT`` (messages to count), ``BARE_APP_ID`` and
``BARE_BOOTSTRAP``; it writes ``{"messages": n, "seconds": s}`` (first to last message) to the
file ``BARE_OUT`` and exits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import faust
import orjson


def main() -> None:
    topics = os.environ["BARE_TOPICS"].split(",")
    expect = int(os.environ["BARE_EXPECT"])
    app = faust.App(
        os.environ["BARE_APP_ID"], broker=f"kafka://{os.environ['BARE_BOOTSTRAP']}", store="memory://",
        consumer_auto_offset_reset="earliest", web_enabled=False, datadir=tempfile.mkdtemp(),
        broker_max_poll_records=2000, stream_buffer_maxsize=8192, topic_allow_declare=False,
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def count(stream: faust.StreamT) -> None:
        async for _ in stream.events():
            if not seen["n"]:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] >= expect:
                result = {"messages": seen["n"], "seconds": time.perf_counter() - seen["first"]}
                with open(os.environ["BARE_OUT"], "wb") as out:
                    out.write(orjson.dumps(result))
                # Counting is all it was for: no graceful shutdown to wait for.
                os._exit(0)

    sys.argv = ["bare-agent", "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
