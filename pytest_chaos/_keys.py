"""The plugin's stash keys, in a module of their own so that every layer (services, report,
runner) can use them without importing the plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_chaos.backends.embedded import EngineProcess
    from pytest_chaos.chaos import Chaos
    from pytest_chaos.config import ChaosConfig
    from pytest_chaos.dns.session import DnsSession
    from pytest_chaos.markers import MarkedFault
    from pytest_chaos.services.fixtures import ServiceRegistry

# On the config: the resolved settings, the engine process, the services of the session.
config_key: pytest.StashKey[ChaosConfig] = pytest.StashKey()
process_key: pytest.StashKey[EngineProcess] = pytest.StashKey()
services_key: pytest.StashKey[ServiceRegistry] = pytest.StashKey()
# On the config: the session's DNS names, faults, lookups and server (made on first use).
dns_key: pytest.StashKey[DnsSession] = pytest.StashKey()
# On a test item: its marker faults, and its `chaos` object.
marked_key: pytest.StashKey[list[MarkedFault]] = pytest.StashKey()
chaos_key: pytest.StashKey[Chaos] = pytest.StashKey()
# On a Hypothesis test item: its function-scoped fixtures that are not safe across examples.
unsafe_fixtures_key: pytest.StashKey[list[str]] = pytest.StashKey()
