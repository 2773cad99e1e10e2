"""What every service of the native stack has in common: start, probe, stop, pid and log files."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from cdcapp.config import Settings

HOST = "127.0.0.1"

# Repository folder with the Maven pom, the connector configs and the properties templates.
DEBEZIUM_DIR = Path(__file__).resolve().parents[2] / "debezium"

Echo = Callable[[str], None]

# Popen objects of the services this Python process started. Holding them lets a process killed by
# hand be reaped (a zombie still answers kill(pid, 0)) and keeps Popen from warning on collection.
_children: dict[int, subprocess.Popen[bytes]] = {}

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class StackError(RuntimeError):
    """A service could not be installed, started or reached; the message says where to look."""


class ProbeFailed(Exception):
    """The service answered wrongly or not at all; the message says how."""


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``${NAME}`` placeholders; other ``$`` uses (RegexRouter's ``$3``) are left alone."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template placeholder ${{{name}}} has no value")
        return str(values[name])

    return _PLACEHOLDER.sub(one, template)


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Mute client libraries that log every refused connection while a server starts: the probe's
    own error says what failed."""
    saved = [(log, log.level) for log in map(logging.getLogger, loggers)]
    for log, _ in saved:
        log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for log, level in saved:
            log.setLevel(level)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, or None when there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may contain spaces: split after its closing one.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def process_alive(pid: int, started: str | None = None) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    stat = _proc_stat(pid)
    if stat is None or stat[0] == "Z":
        return False
    # A recycled pid belongs to a process started at another time: not ours.
    return started is None or stat[1] == started


def read_end(path: Path, max_bytes: int) -> str | None:
    """The last ``max_bytes`` of a log, decoded; None when there is no log yet."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def tail(path: Path, lines: int = 20) -> str:
    text = read_end(path, 64 * 1024)
    if text is None:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


class Service(ABC):
    """One part of the stack. ``ensure_up`` makes it healthy whatever state it was found in."""

    name: ClassVar[str]
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.state_path

    @property
    @abstractmethod
    def address(self) -> str: ...

    @property
    def log_path(self) -> Path:
        return self.state / "logs" / f"{self.name}.log"

    @abstractmethod
    def ensure_up(self, echo: Echo) -> None:
        """Start what is missing and wait until healthy, or raise StackError within start_timeout."""

    @abstractmethod
    def probe(self) -> None:
        """Raise ProbeFailed unless the service really answers."""

    @abstractmethod
    def stop(self) -> bool:
        """Stop what this stack started; True when something was stopped."""

    def check(self) -> str | None:
        """None when up, else why it is down."""
        try:
            self.probe()
        except ProbeFailed as e:
            return str(e)
        return None

    def wait_healthy(self, is_running: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not is_running():
                raise StackError(
                    f"{self.name} exited while starting; see {self.log_path}:\n{tail(self.log_path)}"
                )
            why = self.check()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} not healthy after {self.start_timeout:.0f} s ({why}); "
                    f"see {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.5)


class ProcessService(Service):
    """A server process started detached, tracked by ``<state>/run/<name>.pid`` (pid and start time)."""

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 30.0
    # OS user to run as; None keeps root. Set through Popen rather than runuser so that the recorded
    # pid is the server itself, which receives the stop signal directly.
    user: ClassVar[str | None] = None

    @property
    @abstractmethod
    def ports(self) -> list[int]: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def prepare(self, echo: Echo) -> None:
        """Write configs and initialise data once, before each start."""

    def after_ready(self, echo: Echo) -> None:
        """Idempotent setup once healthy (databases, schema); runs on every ``up``."""

    @property
    def pid_path(self) -> Path:
        return self.state / "run" / f"{self.name}.pid"

    def _recorded(self) -> tuple[int, str] | None:
        try:
            pid_s, started = self.pid_path.read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        return int(pid_s), started

    def pid(self) -> int | None:
        """Pid of the live process this stack started, else None."""
        recorded = self._recorded()
        return recorded[0] if recorded and process_alive(*recorded) else None

    def _kill_leftovers(self) -> None:
        """Kill what remains of a service whose main process died (killed by hand, crashed).

        PostgreSQL backends outlive a killed postmaster and keep its shared memory, so a new one
        would refuse to start. Linux never reuses a pid while it is still some process group's id:
        while the recorded leader is gone and its group is not empty, every member is ours.
        """
        recorded = self._recorded()
        if recorded is None or process_alive(recorded[0]):
            return
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                os.killpg(recorded[0], signal.SIGKILL)
                time.sleep(0.1)
        except ProcessLookupError:
            pass

    def ensure_up(self, echo: Echo) -> None:
        pid = self.pid()
        if pid is None:
            self._kill_leftovers()
            busy = [p for p in self.ports if port_in_use(p)]
            if busy:
                raise StackError(
                    f"{self.name}: port(s) {busy} already in use by a process this stack did not start"
                )
            self.prepare(echo)
            pid = self.start()
        self.wait_healthy(lambda: process_alive(pid))
        self.after_ready(echo)

    def start(self) -> int:
        for d in (self.log_path.parent, self.pid_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- cdcapp stack: starting {self.name} at {time.ctime()} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                # Own session: the service outlives the CLI and a Ctrl-C in its terminal.
                start_new_session=True,
            )
        _children[proc.pid] = proc
        stat = _proc_stat(proc.pid)
        self.pid_path.write_text(f"{proc.pid} {stat[1] if stat else ''}\n")
        return proc.pid

    def stop(self) -> bool:
        pid = self.pid()
        self.pid_path.unlink(missing_ok=True)
        if pid is None:
            return False
        os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        # The process group is the session started for this service: only its own descendants.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while process_alive(pid):
            time.sleep(0.1)
        return True

    def check(self) -> str | None:
        try:
            if self.pid() is None:
                raise ProbeFailed("process is gone" if self.pid_path.exists() else "not running")
            self.probe()
        except ProbeFailed as e:
            return str(e)
        return None
