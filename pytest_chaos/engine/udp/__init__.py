"""UDP proxies, an extension of the Toxiproxy API: sessions per client address and datagram
toxics (latency with jitter, loss, duplication, reordering, corruption, bandwidth, blackhole).

`proxy.py` the proxy and its `protocol` field, `session.py` one client, `link.py` one direction
of a session with its toxic stages, `datagram.py` what a datagram toxic sees, `toxics.py` the
toxics by wire name.
"""

from __future__ import annotations

from pytest_chaos.engine.udp import toxics
from pytest_chaos.engine.udp.datagram import DATAGRAM_TOXIC_TYPES
from pytest_chaos.engine.udp.proxy import UdpProxy

__all__ = ["DATAGRAM_TOXIC_TYPES", "UdpProxy", "toxics"]
