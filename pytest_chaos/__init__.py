"""pytest-chaos: chaos and resilience testing for pytest."""

from __future__ import annotations

__version__ = "0.1.0"
