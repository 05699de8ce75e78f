"""The embedded engine: an asyncio re-implementation of the Toxiproxy server."""

from __future__ import annotations

from pytest_chaos.engine.server import Engine, EngineThread

__all__ = ["Engine", "EngineThread"]
