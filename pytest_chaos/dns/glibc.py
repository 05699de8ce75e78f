"""How glibc's resolver reports each DNS failure to Python: the in-process layer raises
exactly these.

Measured with glibc 2.36 (Debian 12), CPython 3.11, against a DNS server answering each
failure, in a network namespace whose /etc/resolv.conf named only that server (see the README,
"DNS failures", and `tests/dns/real_resolver.py`, which measures it again in every test run).
`socket.getaddrinfo` (any family, type, flags), `socket.gethostbyname`,
`socket.gethostbyname_ex`, `socket.create_connection` and asyncio's `loop.getaddrinfo` all
raise `socket.gaierror(code, message)`:

| server's answer                | code                   | message                               |
| ------------------------------ | ---------------------- | ------------------------------------- |
| NXDOMAIN                       | EAI_NONAME (-2)        | Name or service not known             |
| SERVFAIL                       | EAI_AGAIN (-3)         | Temporary failure in name resolution  |
| REFUSED                        | EAI_AGAIN (-3)         | Temporary failure in name resolution  |
| none (after timeout x attempts)| EAI_AGAIN (-3)         | Temporary failure in name resolution  |
| NOERROR without an address     | EAI_NODATA (-5)        | No address associated with hostname   |

A name with addresses of another family only (an IPv4-only name asked for AF_INET6, or an
IPv6-only name given to gethostbyname) is EAI_NODATA too. An unknown service name fails with
EAI_SERVICE (-8) before any lookup.
"""

from __future__ import annotations

import platform
import socket
from typing import Final

from pytest_chaos.faults import DnsErrorKind

# The values are glibc's (netdb.h); Python exposes them as socket.EAI_* on Linux.
EAI_NONAME: Final = -2
EAI_AGAIN: Final = -3
EAI_NODATA: Final = -5
EAI_ADDRFAMILY: Final = -9
EAI_SERVICE: Final = -8

MESSAGES: Final[dict[int, str]] = {
    EAI_NONAME: "Name or service not known",
    EAI_AGAIN: "Temporary failure in name resolution",
    EAI_NODATA: "No address associated with hostname",
}
CODE_NAMES: Final[dict[int, str]] = {
    EAI_NONAME: "EAI_NONAME",
    EAI_AGAIN: "EAI_AGAIN",
    EAI_NODATA: "EAI_NODATA",
    EAI_ADDRFAMILY: "EAI_ADDRFAMILY",
    EAI_SERVICE: "EAI_SERVICE",
}
CODES: Final[dict[DnsErrorKind, int]] = {
    "nxdomain": EAI_NONAME,
    "servfail": EAI_AGAIN,
    "refused": EAI_AGAIN,
    "timeout": EAI_AGAIN,
    "empty": EAI_NODATA,
}


def gaierror(code: int) -> socket.gaierror:
    """The exception glibc's getaddrinfo gives Python for `code`."""
    return socket.gaierror(code, MESSAGES[code])


def gaierror_for(kind: DnsErrorKind) -> socket.gaierror:
    """The exception a lookup failing with `kind` raises through glibc."""
    return gaierror(CODES[kind])


def code_name(code: int) -> str:
    """glibc's name of EAI code `code` (`EAI_AGAIN`), or `EAI -11` for a code not listed."""
    return CODE_NAMES.get(code, f"EAI {code}")


def platform_problem() -> str | None:
    """Why this platform's resolver errors may differ from the measured ones (None on Linux
    with glibc). musl, macOS and Windows number and word their EAI_* errors differently."""
    system = platform.system()
    libc, version = platform.libc_ver()
    if system == "Linux" and libc == "glibc":
        return None
    where = f"{system} with {libc} {version}".strip() if libc else f"{system} without glibc"
    return (
        "the in-process layer reproduces glibc's resolver errors (measured on Linux with"
        f" glibc), and this platform is {where}; point the code under test at the plugin's"
        " DNS server (chaos.dns_server) instead"
    )
