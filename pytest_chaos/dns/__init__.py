"""DNS for chaos tests: names that resolve to proxies, and lookups that fail on cue.

Two layers read one configuration (`session.DnsSession`: the names given with
`chaos.resolve`, `chaos_hosts` or a service's `host=`, and the active `dns_failure` faults):

- `inprocess`: `socket.getaddrinfo`, `socket.gethostbyname` and `socket.gethostbyname_ex`
  (so asyncio's default loop, requests, httpx, redis-py, psycopg...) answer those names and
  fail as glibc's resolver does (`glibc` holds the measured exceptions);
- `server`: a DNS server on a free loopback port (UDP and TCP, built on dnspython) for
  clients that speak DNS themselves (dnspython's resolver, aiodns/pycares, child processes).

`applier` registers how a `DnsFailure` is applied; `lookups` is what both layers saw.
Nothing here is imported by the plugin until a test uses DNS, and dnspython only when the
server starts.
"""
