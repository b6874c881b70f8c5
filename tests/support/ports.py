"""UDP port ranges for tests of ``relay.udp_port_range``: free ones, and ones held busy."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# Below Linux's ephemeral ports (32768 and up), so sockets the system numbers by itself never
# land in a test's range while it runs.
_LOW, _HIGH = 20000, 32000


def _bind(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def free_udp_ports(count: int) -> range:
    """``count`` consecutive UDP ports that are free on 127.0.0.1 now."""
    for _ in range(200):
        start = random.randrange(_LOW, _HIGH - count)
        with busy(range(start, start + count)) as held:
            if len(held) == count:
                return range(start, start + count)
    raise AssertionError(f"no {count} consecutive free UDP ports on 127.0.0.1")


@contextmanager
def busy(ports: range) -> Iterator[list[int]]:
    """Hold every port of ``ports`` that is free on 127.0.0.1 (the ports held, listed)."""
    with ExitStack() as stack:
        held = []
        for port in ports:
            s = _bind(port)
            if s is not None:
                stack.callback(s.close)
                held.append(port)
        yield held
