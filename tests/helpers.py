"""Small things several test modules share (fixtures live in conftest.py)."""

import socket


def free_port() -> int:
    """A TCP port free on every interface of this machine now (Ray binds its ports on the node's address)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
