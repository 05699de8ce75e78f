"""What glibc's real resolver gives each client, measured in a child process: in a network
namespace of its own (only loopback), with /etc/resolv.conf bind-mounted to name one DNS
server on 127.0.0.1:53 (`options timeout:1 attempts:1`, so a timeout costs 1 s), where either
the reference server (`tests/dns/reference.py`) or the plugin's own DNS server answers.

Run as `python -m tests.dns.real_resolver reference|plugin` inside the namespace (what
`measure()` does); it prints the probes' outcomes as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.dns.reference import ADDRESS, ADDRESS6, LABELS

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "example.test"
# kind -> the name the probes resolve; "answer" and "answer6" are names with an address.
HOSTS = {kind: f"{label}.{DOMAIN}" for kind, label in LABELS.items()} | {
    "answer": f"ok.{DOMAIN}",
    "answer6": f"ok6.{DOMAIN}",
}
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
TIMEOUT_MS = 1000  # what the resolv.conf above makes a timeout cost


def unavailable() -> str | None:
    """Why a network namespace cannot be made here (None: it can)."""
    missing = [tool for tool in ("unshare", "ip", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"unshare --net --mount failed: {probe.stderr.strip()}"
    return None


def measure(server: str) -> dict[str, Any]:
    """The probes' outcomes through glibc against `server` ("reference" or "plugin")."""
    with tempfile.TemporaryDirectory(prefix="chaos-resolv-") as directory:
        resolv_conf = Path(directory) / "resolv.conf"
        resolv_conf.write_text(RESOLV_CONF)
        script = 'ip link set lo up && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        command = ["unshare", "--net", "--mount", "sh", "-c", script, "sh", str(resolv_conf)]
        command += [sys.executable, "-m", "tests.dns.real_resolver", server]
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ)
        )
    if done.returncode != 0:
        raise RuntimeError(f"the child failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _plugin_server() -> Any:
    """The plugin's DNS server on 127.0.0.1:53 with one fault per kind (no in-process layer:
    this process must resolve through glibc)."""
    from pytest_chaos.dns.lookups import DnsLog
    from pytest_chaos.dns.rules import ActiveFault, DnsRules, HostEntry
    from pytest_chaos.dns.server import DnsServer
    from pytest_chaos.faults import DnsFailure

    rules = DnsRules()
    rules.add_name(HostEntry(HOSTS["answer"], "test", addresses=(ADDRESS,)))
    rules.add_name(HostEntry(HOSTS["answer6"], "test", addresses=(ADDRESS6,)))
    for kind, label in LABELS.items():
        fault = DnsFailure(f"{label}.{DOMAIN}", error=kind, timeout=TIMEOUT_MS)  # type: ignore[arg-type]
        rules.add_fault(ActiveFault(fault, "0"))
    return DnsServer(rules.decide, DnsLog().add, port=53).start()


def main(server: str) -> None:
    from tests.dns.probes import probe_all
    from tests.dns.reference import reference_server

    if server == "plugin":
        running = _plugin_server()
        try:
            outcomes = probe_all(HOSTS)
        finally:
            running.stop()
    else:
        with reference_server(port=53):
            outcomes = probe_all(HOSTS)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main(sys.argv[1])
