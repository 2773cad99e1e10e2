"""Blocking clients (clickhouse-driver, chdb, sqlite3) used from the event loop.

Each such client is bound to the thread that made it, so each gets one dedicated thread: calls
run there in order and the event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DedicatedThread:
    def __init__(self, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self, wait: bool) -> None:
        self._executor.shutdown(wait=wait)
