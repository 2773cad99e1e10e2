"""The ``cdcapp`` command: one entry point for the stack, the worker and the tools around it."""

from __future__ import annotations

import typer

from cdcapp.stack.cli import stack_app

app = typer.Typer(no_args_is_help=True, help="Change-data-capture from OLTP databases into ClickHouse.")
app.add_typer(stack_app, name="stack")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
