"""Ports for test and bench workers: never from the kernel's ephemeral range, never twice."""

import socket

import pytest

from cdcapp.tools.pipeline import ephemeral_low, free_port


@pytest.mark.enable_socket  # binds local ports only
def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low = ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(p < low for p in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
