"""HTTP-aware toxics: `http_error`, `http_delay` and `http_abort`, for plain-text HTTP/1.1.

A plain toxic works on one direction's bytes, as a stage of a link (`link.py`). An HTTP toxic
must see a request on the upstream link and answer it on the downstream one, so it acts on the
connection instead: the toxic classes here are registered by type name with the others
(`toxics.base.TOXIC_TYPES`), flagged `acts_on_connection`, and are never made into link stages.
Once a proxy has had one, each of its connections gets an `HttpLayer` (`layer.py`) that takes
both sides' bytes before the links do:

    client --> HttpLayer (requests: held, swallowed or passed) --> upstream link --> server
    client <-- downstream link <-- HttpLayer (answers: made, passed or cut) <-- server

So plain toxics on the same proxy act as the network between the client and a server that
misbehaves: a latency toxic delays an injected 503 as it delays the server's own answers.

What the layer does not touch passes byte for byte. Bytes that are not HTTP/1.x (another
protocol, TLS: HTTPS is out of scope), a request or answer h11 rejects, and a protocol switch
(Upgrade, CONNECT) make the layer stop parsing that connection: it passes everything through
from then on and records an `http_passthrough` event saying why. Each request is recorded as an
`http_request` event (see `engine/events.py`).

`layer` (and so h11) is imported when a connection first needs it, not at engine start-up.
"""

from __future__ import annotations

from pytest_chaos.engine.http_toxics import abort, delay, error
from pytest_chaos.engine.http_toxics.base import HttpToxic

__all__ = ["HttpToxic", "abort", "delay", "error"]
