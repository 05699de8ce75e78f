"""pytest hooks and fixtures of pytest-chaos. Imports nothing heavy at load time."""

from __future__ import annotations
