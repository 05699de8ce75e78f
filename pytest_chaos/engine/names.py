"""Which proxy and toxic names the API accepts: those a client can address again.

A name becomes one segment of a URL path (`/proxies/{name}/toxics/{toxic}`). Upstream's router
(gorilla/mux) matches the percent-decoded path, one segment per `[^/]+`, after cleaning `.` and
`..` segments away, so a name holding `/`, or `.` and `..` themselves, are created there but can
never be reached again. Every other name works when the client percent-encodes it (`?`, `#`,
`%`, spaces, any letter). We also refuse what cannot be text on the wire or in a log line:
lone UTF-16 surrogates (JSON allows `"\\ud800"`, UTF-8 cannot carry it; upstream silently turns
it into U+FFFD) and control characters.
"""

from __future__ import annotations

import json
import re

from pytest_chaos.engine.errors import bad_request

ALLOWED = (
    'any text except "." and "..", without "/", control characters (U+0000-U+001F,'
    " U+007F-U+009F) or lone surrogates (U+D800-U+DFFF)"
)
_FORBIDDEN = re.compile("[/\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _problem(name: str) -> str | None:
    if name in (".", ".."):
        return "a URL path cannot hold it as a segment"
    found = _FORBIDDEN.search(name)
    if found is None:
        return None
    char = found.group()
    if char == "/":
        return 'it contains "/", which separates URL path segments'
    if "\ud800" <= char <= "\udfff":
        return f"it contains the lone surrogate U+{ord(char):04X}, which is not text"
    return f"it contains the control character U+{ord(char):04X}"


def check_name(name: str, what: str, where: str = "") -> None:
    """Raise a 400 naming `what` (e.g. "proxy name") unless `name` can be addressed in a URL."""
    problem = _problem(name)
    if problem is not None:
        raise bad_request(
            f"{what} {json.dumps(name)} is not allowed{where}: {problem}; allowed: {ALLOWED}"
        )


def check_text(value: str, field: str, where: str = "") -> None:
    """Raise a 400 naming `field` when `value` holds a lone surrogate (it cannot be encoded)."""
    found = re.search("[\ud800-\udfff]", value)
    if found is not None:
        raise bad_request(
            f"{field} {json.dumps(value)} is not allowed{where}: it contains the lone surrogate"
            f" U+{ord(found.group()):04X}, which is not text; allowed: valid Unicode text"
        )
