"""Start, watch and stop pipeline workers as child processes (the demo and the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from cdcapp.stack.base import tail


class WorkerProcess:
    def __init__(self, env: dict[str, str], web_port: int, log_path: Path) -> None:
        self.env = {**os.environ, **env, "CDCAPP_WEB_PORT": str(web_port)}
        self.web_port = web_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdcapp.cli", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/status/", timeout=2) as response:
                return orjson.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def exited(self) -> str | None:
        """Why the worker is gone (its exit code and the end of its log), or None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        why = f"worker on :{self.web_port} exited with {self.process.returncode}; "
        # A crash's cause is logged well before the shutdown lines that end the log.
        if first := first_error(self.log_path):
            why += f"its first error in {self.log_path}:\n{first}\n... and the log "
        return why + f"ends:\n{tail(self.log_path, 40)}"

    def metric_samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every sample of a metric, from the worker's /metrics."""
        if why := self.exited():
            raise RuntimeError(why)
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def metric_total(self, name: str) -> float:
        """The sum of a metric's samples over all labels."""
        return sum(value for _, value in self.metric_samples(name))

    def _proc(self, name: str) -> str | None:
        """The worker process's ``/proc/<pid>/<name>``, or None when it is gone."""
        if self.process is None:
            return None
        try:
            return Path(f"/proc/{self.process.pid}/{name}").read_text()
        except OSError:
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time the worker process has used so far, user and system, all threads."""
        stat = self._proc("stat")
        if stat is None:
            return None
        # Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_bytes(self) -> int | None:
        """The worker process's peak resident set size so far (Linux ``VmHWM``)."""
        status = self._proc("status")
        if status is None:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    def wait_ready(self, timeout_s: float = 120) -> dict:
        """Until the worker answers /status/ with partitions assigned (recovery done)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if why := self.exited():
                raise RuntimeError(why)
            status = self.status()
            if status and status["assigned_partitions"]:
                return status
            time.sleep(0.5)
        raise TimeoutError(f"worker on :{self.web_port} not ready after {timeout_s}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit - what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


def first_error(log_path: Path, lines: int = 40) -> str | None:
    """The log's first ERROR or CRITICAL record and the lines after it (its traceback)."""
    try:
        text = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for n, line in enumerate(text):
        if "] [ERROR] " in line or "] [CRITICAL] " in line:
            return "\n".join(text[n:n + lines])
    return None
