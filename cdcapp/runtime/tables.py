"""Faust tables as the join keeps them: bytes in, bytes out, in the store and in the changelog."""

from __future__ import annotations

import faust


class RawBytesTable(faust.Table):
    """A table of bytes kept as they are, in the store and in the changelog.

    Faust derives a table's serializers from its key/value types and picks "json" for bytes;
    the changelog topic is built from them early, so they must be right from the constructor on.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"
