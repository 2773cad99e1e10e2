"""``cdcapp stack up|down|status|logs``."""

from __future__ import annotations

import typer

stack_app = typer.Typer(no_args_is_help=True, help="Run the local stack of real services.")
