"""A TCP connection's handshake under `packet_loss`: lost SYNs hold the connection back.

The kernel completes the client's handshake with the proxy before the proxy accepts it, so a
lost SYN cannot hold back the client's `connect()`. It holds back everything after it: the dial
to the upstream (the server sees the connection late) and so the first byte either way, which
waits in the kernel meanwhile. A SYN travels upstream and its SYN-ACK downstream, so the
`packet_loss` toxics of both streams can lose an attempt. When the handshake gives up, the
client's connection is reset (where a real client's `connect()` would fail with ETIMEDOUT).
The model and its sources: `toxics/packet_loss.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_chaos.engine.toxics.packet_loss import LossChain, handshake

if TYPE_CHECKING:
    from pytest_chaos.engine.connection import Connection


async def establish(connection: Connection) -> bool:
    """Wait as long as lost SYNs delay `connection`'s establishment. False when the handshake
    gave up (the connection is then reset) or the connection closed meanwhile.

    `connection.rng_factory(direction)(toxic_name)` is the generator the connection's links draw
    from for that toxic: its first draw is the toxicity roll the link will make, so the
    handshake is hurt exactly when the data will be. The SYNs draw from their own generator."""
    attempt_lost: list[Callable[[], bool]] = []
    syn_retries: list[int] = []
    names: list[str] = []
    for direction in ("upstream", "downstream"):
        make = connection.rng_factory(direction)
        for setting in connection.proxy.toxic_settings(direction):
            if setting.type != "packet_loss" or not make(setting.name).random() < setting.toxicity:
                continue
            attributes = setting.toxic.attributes
            chain = LossChain(attributes["loss_rate"], attributes["correlation"], {})
            attempt_lost.append(functools.partial(chain.lost, make(f"{setting.name}/syn")))
            syn_retries.append(attributes["syn_retries"])
            names.append(setting.name)
    if not attempt_lost:
        return True
    fate = handshake(attempt_lost, min(syn_retries))
    if not fate.losses:
        return True
    started = time.monotonic()
    # Wait, but no longer than the connection lives (the client may give up first).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(fate.waited):
            await connection.wait_closed()
    if connection.closed:
        return False
    connection.record(
        "syn_lost",
        at=started,
        losses=fate.losses,
        delay_ms=round(fate.waited * 1000, 3),
        gave_up=fate.gave_up,
        toxics=names,
    )
    if fate.gave_up:
        connection.close(by=f"toxic {names[0]} (no answer to {fate.losses} SYNs)", reset=True)
        return False
    return True
