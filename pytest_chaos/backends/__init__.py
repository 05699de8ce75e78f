"""Where the Toxiproxy API lives: the embedded engine in its own process (`embedded`), an
external server (`--toxiproxy-url`), or the Toxiproxy image in a container (`container`).
Every backend is driven through one client (`client.ToxiproxyClient`); `server` connects the
session to whichever the options name.

This package's `__init__` imports nothing: the plugin imports `embedded` early, to launch the
engine before anything heavy is loaded.
"""

from __future__ import annotations


class BackendError(Exception):
    """The chosen backend could not be started or reached; the message says why."""
