"""Decoding of Debezium-shaped change events; see :mod:`cdcapp.decode.debezium`."""

from cdcapp.decode.debezium import UNAVAILABLE, Change, DecodeError, decode

__all__ = ["UNAVAILABLE", "Change", "DecodeError", "decode"]
