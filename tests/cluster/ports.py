"""Runs of consecutive free ports (the cluster command numbers its nodes consecutively)."""

from __future__ import annotations

import random
import socket


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free right now."""
    for _ in range(200):
        # Below Linux's ephemeral range (32768+): there no outgoing connection of another
        # test can take one of these ports between this check and the cluster binding it.
        base = random.randint(20000, 32000)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no run of free ports found")
