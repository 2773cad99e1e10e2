"""Shared fixtures. Stack tests talk to the real native stack; nothing is mocked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdcapp import stack as native_stack
from cdcapp.config import Settings, get_settings


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The running native stack (started if needed, idempotently); yields its settings.

    It is left running afterwards: starting it costs far more than keeping it.
    """
    settings = get_settings()
    native_stack.up(settings, echo=lambda line: None)
    yield settings
