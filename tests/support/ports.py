"""Loopback ports for the servers tests start: a free one, and waiting until one listens.

Not a pytest plugin, so the fixture modules can import it before pytest loads them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on now (and, as no one binds it, a closed one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, process: subprocess.Popen[Any], timeout: float) -> bool:
    """Wait until 127.0.0.1:`port` takes connections; False when `process` exits or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
