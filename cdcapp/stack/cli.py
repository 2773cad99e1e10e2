"""``cdcapp stack up|down|status|logs|connectors``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from cdcapp.config import get_settings
from cdcapp.stack import core
from cdcapp.stack.base import StackError, tail
from cdcapp.stack.connectors import SOURCES, Connector, Endpoints

stack_app = typer.Typer(no_args_is_help=True, help="Run the local stack of real services.")


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@stack_app.command()
def up() -> None:
    """Install what is missing, start every service, wait until each is healthy."""
    try:
        core.up(get_settings(), echo=typer.echo)
    except StackError as e:
        _fail(str(e))


@stack_app.command()
def down() -> None:
    """Stop the services this stack started."""
    core.down(get_settings(), echo=typer.echo)


@stack_app.command()
def status() -> None:
    """One line per service; exit code 1 when any is down or stalled."""
    states = core.status(get_settings())
    for st in states:
        color = typer.colors.GREEN if st.up else typer.colors.RED
        pid = f" pid {st.pid}" if st.pid else ""
        word = "up" if st.up else "stalled" if st.detail.startswith("stalled") else "down"
        line = f"{st.name:<18} {typer.style(word, fg=color):<5} {st.address}{pid}"
        typer.echo(line + (f"  ({st.detail.splitlines()[0]})" if st.detail else ""))
    if not all(st.up for st in states):
        raise typer.Exit(1)


@stack_app.command()
def logs(
    service: Optional[str] = typer.Argument(None, help="postgres, mariadb, clickhouse, kafka, connect."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many last lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (one service)."),
) -> None:
    """Print the end of a service's log under <state_dir>/logs/ (all services when none is named)."""
    settings = get_settings()
    try:
        chosen = [core.service(service, settings)] if service else core.services(settings)
    except KeyError as e:
        _fail(e.args[0])
    paths = list(dict.fromkeys(svc.log_path for svc in chosen))
    for path in paths:
        if len(paths) > 1:
            typer.secho(f"==> {path} <==", bold=True)
        typer.echo(tail(path, lines))
    if follow and len(paths) == 1 and paths[0].exists():
        with paths[0].open("rb") as f:
            f.seek(0, 2)
            try:
                while True:
                    chunk = f.read()
                    if chunk:
                        sys.stdout.write(chunk.decode("utf-8", "replace"))
                        sys.stdout.flush()
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                pass


@stack_app.command()
def connectors(
    connect_url: Optional[str] = typer.Option(None, help="Connect REST URL; default the native one."),
    pg_host: str = typer.Option("127.0.0.1", help="PostgreSQL host as Connect reaches it."),
    mariadb_host: str = typer.Option("127.0.0.1", help="MariaDB host as Connect reaches it."),
    kafka_bootstrap: Optional[str] = typer.Option(None, help="Kafka as Connect reaches it (schema history)."),
    spec: list[Path] = typer.Option([], "--spec", help="A spec whose tables to capture (repeatable, one per "
                                    "pipeline); default: CDCAPP_SPEC_PATH, else the built-in spec."),
    prune: bool = typer.Option(False, "--prune", help="Stop capturing the tables no given spec names (by "
                               "default they stay, and are listed)."),
) -> None:
    """Deploy (create or update) the Debezium connectors and wait until they run.

    What they capture comes from the specs, merged into what they capture already; a table they
    did not capture before is snapshotted while streaming goes on. Ports and credentials come from
    the settings (CDCAPP_*); hosts from the options, so that docker-compose can deploy against its
    own service names.
    """
    from cdcapp.model.spec import load_spec

    settings = get_settings()
    specs = [load_spec(path) for path in spec] or None
    endpoints = Endpoints(
        connect_url=connect_url or Endpoints.native(settings).connect_url,
        pg_host=pg_host, mariadb_host=mariadb_host, kafka_bootstrap=kafka_bootstrap,
    )
    try:
        for source in SOURCES:
            connector = Connector(settings, source, endpoints, specs=specs, prune=prune)
            connector.ensure_up(typer.echo)
            typer.echo(f"{connector.name:<18} up    {connector.address}")
    except StackError as e:
        _fail(str(e))
