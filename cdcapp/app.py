"""``faust -A cdcapp.app worker``: the app for Faust's command line, built on first use.

Importing this module does nothing; reading ``cdcapp.app.app`` builds the app from the settings
in the environment (``cdcapp.config``), once.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _app() -> Any:
    from cdcapp.config import get_settings
    from cdcapp.runtime.app import create_app, tune_garbage_collector

    app = create_app(get_settings())
    tune_garbage_collector()
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
