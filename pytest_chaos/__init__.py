"""pytest-chaos: chaos and resilience testing for pytest.

The public names below are imported on first use, so loading the plugin stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

if "pytest" in sys.modules:
    # Before anything imports it, so plain asserts in the helpers show rich diffs. Outside a
    # pytest run (the engine's own process) there is nothing to rewrite, and pytest is not
    # worth its import time there.
    import pytest

    pytest.register_assert_rewrite("pytest_chaos.assertions")

__version__ = "0.1.0"

_EXPORTS = {
    "Chaos": "pytest_chaos.chaos",
    "ChaosAssertionError": "pytest_chaos.assertions",
    "ProxyInfo": "pytest_chaos.backends.client",
    "ToxiproxyClient": "pytest_chaos.backends.client",
    "ToxiproxyServer": "pytest_chaos.backends.server",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_chaos' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
