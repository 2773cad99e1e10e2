"""``faust -A cdcapp.app worker``: the app for Faust's command line, built on first use.

Importing this module does nothing; reading ``cdcapp.app.app`` builds the app from the settings
in the environment (``cdcapp.config``), once.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _app() -> Any:
    import atexit
    import sys

    from cdcapp.clickhouse.generation import GenerationError, resolve
    from cdcapp.config import get_settings
    from cdcapp.model.spec import SpecError, load_spec
    from cdcapp.runtime.app import create_app, tune_interpreter
    from cdcapp.stack.prometheus import announce

    def echo(line: str) -> None:
        print(f"cdcapp worker: {line}", file=sys.stderr, flush=True)

    settings = get_settings()
    try:
        spec = load_spec(settings.spec_path)
        settings = resolve(settings, spec, echo)
    except (SpecError, GenerationError) as exc:  # one line for the operator, not a traceback
        echo(str(exc))
        raise SystemExit(2) from None
    app = create_app(settings, spec)
    # The native stack's Prometheus finds the workers of this machine by these files.
    target = announce(settings, settings.app_id, settings.web_host, settings.web_port)
    atexit.register(target.unlink, missing_ok=True)
    tune_interpreter()
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
