"""Bring the whole stack up or down in dependency order, and report on it."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cdcapp.config import Settings, get_settings
from cdcapp.stack.base import Echo, ProcessService, Service, StackError
from cdcapp.stack.clickhouse import ClickHouse
from cdcapp.stack.connect import Connect
from cdcapp.stack.connectors import SOURCES, Connector
from cdcapp.stack.install import ensure_installed
from cdcapp.stack.kafka import Kafka
from cdcapp.stack.mariadb import MariaDB
from cdcapp.stack.postgres import Postgres
from cdcapp.stack.prometheus import Prometheus


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str
    detail: str = ""
    pid: int | None = None


def services(settings: Settings | None = None) -> list[Service]:
    """Every service, in start order."""
    s = settings or get_settings()
    return [
        Postgres(s), MariaDB(s), ClickHouse(s), Kafka(s), Connect(s),
        *(Connector(s, source) for source in SOURCES), Prometheus(s),
    ]


def service(name: str, settings: Settings | None = None) -> Service:
    by_name = {svc.name: svc for svc in services(settings)}
    if name not in by_name:
        raise KeyError(f"no service {name!r}; services: {', '.join(by_name)}")
    return by_name[name]


LOCK_TIMEOUT_S = 900.0


@contextmanager
def _exclusive(settings: Settings, echo: Echo) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per state folder.

    Two concurrent ``up`` (two test sessions sharing the stack) would both find a service stopped,
    both start it, and the loser's pid file would hide the winner.
    """
    run = settings.state_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "stack.lock", "a+") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    lock.seek(0)
                    echo(f"waiting for another cdcapp stack up/down (pid {lock.read().strip() or '?'})")
                    told = True
                if time.monotonic() > deadline:
                    raise StackError(f"another cdcapp stack up/down still holds {lock.name}") from None
                time.sleep(0.5)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pid(svc: Service) -> int | None:
    return svc.pid() if isinstance(svc, ProcessService) else None


def up(settings: Settings | None = None, echo: Echo = print) -> list[ServiceStatus]:
    """Install what is missing, start what is not running, wait until everything is healthy.

    Raises StackError naming the log of the first service that does not come up.
    """
    settings = settings or get_settings()
    result = []
    with _exclusive(settings, echo):
        ensure_installed(echo)
        for svc in services(settings):
            svc.ensure_up(echo)
            st = ServiceStatus(svc.name, True, svc.address, pid=_pid(svc))
            echo(f"{st.name:<18} up    {st.address}")
            result.append(st)
    return result


def down(settings: Settings | None = None, echo: Echo = print) -> None:
    """Stop, in reverse order, the processes this stack started (and only those)."""
    settings = settings or get_settings()
    with _exclusive(settings, echo):
        for svc in reversed(services(settings)):
            if svc.stop():
                echo(f"{svc.name:<18} stopped")


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    return [
        ServiceStatus(svc.name, why is None, svc.address, why or "", _pid(svc))
        for svc in services(settings)
        for why in [svc.check()]
    ]
