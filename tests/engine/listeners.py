"""Which TCP ports this process listens on, read from /proc (Linux).

The engine under test runs in a thread of the test process, so a listener it forgot to close
shows up here even when no proxy mentions it any more.
"""

from __future__ import annotations

import os
from pathlib import Path

TCP_LISTEN_STATE = "0A"


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_ports() -> set[int]:
    """TCP ports that sockets of this process listen on (IPv4 and IPv6)."""
    mine = _socket_inodes()
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN_STATE and inode in mine:
                ports.add(int(local.rpartition(":")[2], 16))
    return ports


def available() -> bool:
    return Path("/proc/self/net/tcp").exists() and Path("/proc/self/fd").is_dir()
