"""PostgreSQL 15 with logical decoding, data in ``<state>/postgres``, run as the ``postgres`` OS user."""

from __future__ import annotations

import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from cdcapp.sources.connections import schema_sql
from cdcapp.stack.base import HOST, Echo, ProbeFailed, ProcessService, StackError

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def check_reachable_by(user: str, path: Path) -> None:
    """A server run as another OS user must be able to traverse every parent of its data dir."""
    for parent in path.parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise StackError(
                f"{path}: the {user} OS user cannot enter {parent} (mode "
                f"{oct(parent.stat().st_mode & 0o777)}); set CDCAPP_STATE_DIR to a folder outside it"
            )


class Postgres(ProcessService):
    name = "postgres"
    user = "postgres"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to disconnect.
    stop_signal = signal.SIGINT

    @property
    def data_dir(self) -> Path:
        return self.state / "postgres"

    @property
    def ports(self) -> list[int]:
        return [self.settings.pg_port]

    @property
    def address(self) -> str:
        s = self.settings
        return f"postgresql://{s.pg_user}@{HOST}:{s.pg_port}/{s.pg_db}"

    def prepare(self, echo: Echo) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        check_reachable_by(self.user, self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", f"{self.user}:{self.user}", str(self.data_dir)], check=True)
        self.data_dir.chmod(0o700)
        echo(f"postgres: initdb {self.data_dir}")
        with tempfile.NamedTemporaryFile("w", prefix="cdcapp-pw") as pw:
            pw.write(self.settings.pg_password + "\n")
            pw.flush()
            subprocess.run(["chown", self.user, pw.name], check=True)
            done = subprocess.run(
                [
                    "runuser", "-u", self.user, "--",
                    str(PG_BIN / "initdb"),
                    "-D", str(self.data_dir),
                    f"--username={self.settings.pg_user}",
                    f"--pwfile={pw.name}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                capture_output=True,
                text=True,
                cwd="/",
            )
        if done.returncode:
            raise StackError(f"postgres: initdb failed:\n{done.stdout}{done.stderr}")

    def command(self) -> list[str]:
        return [
            str(PG_BIN / "postgres"),
            "-D", str(self.data_dir),
            "-c", f"listen_addresses={HOST}",
            "-c", f"port={self.settings.pg_port}",
            # TCP only: the default socket folder belongs to the system instance.
            "-c", "unix_socket_directories=",
            "-c", "wal_level=logical",
            "-c", "max_replication_slots=10",
            "-c", "max_wal_senders=10",
            "-c", "shared_buffers=128MB",
            "-c", "timezone=UTC",
            "-c", "log_timezone=UTC",
        ]

    def _connect(self, dbname: str) -> psycopg.Connection:
        s = self.settings
        return psycopg.connect(
            host=HOST, port=s.pg_port, user=s.pg_user, password=s.pg_password,
            dbname=dbname, connect_timeout=3, autocommit=True,
        )

    def probe(self) -> None:
        try:
            with self._connect("postgres") as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.Error as e:
            raise ProbeFailed(str(e).strip()) from e

    def after_ready(self, echo: Echo) -> None:
        db = self.settings.pg_db
        with self._connect("postgres") as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                echo(f"postgres: CREATE DATABASE {db}")
                conn.execute(f'CREATE DATABASE "{db}"')
        with self._connect(db) as conn:
            conn.execute(schema_sql("postgres"))
