"""The one way tests pick a port before a server starts.

Servers started in-process bind 127.0.0.1:0 and report their port; a port is picked up front only for what must
be told it before starting (a config file, a command line) and for a port nobody listens on (refused
connections). Another process may take it in between: callers that bind it retry or fail loudly.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
