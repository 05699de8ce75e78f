"""What a seed means: one session seed (`--chaos-seed`), and from it one seed per test.

A test's seed depends on the session seed and the test's node id only, never on the tests run
before it, so `pytest path::test --chaos-seed N` draws the same jitter, toxicity rolls and
slices as the same test did inside the whole run with seed N.
"""

from __future__ import annotations

import hashlib
import shlex

# Seeds stay below 2**63 so that every Toxiproxy client and JSON reader keeps them exact.
SEED_BITS = 63


def test_seed(session_seed: int, nodeid: str) -> int:
    """The seed of the test `nodeid` in a session seeded with `session_seed`."""
    digest = hashlib.sha256(f"{session_seed}\0{nodeid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


test_seed.__test__ = False  # type: ignore[attr-defined]  # not a test, whatever its name


def replay_command(nodeid: str, session_seed: int) -> str:
    """The command that runs `nodeid` again with the same draws."""
    return f"pytest {shlex.quote(nodeid)} --chaos-seed {session_seed}"
