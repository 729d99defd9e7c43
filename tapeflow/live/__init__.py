"""Live venue connectors: the shared session loop, journal-first micro-batches, thread adapter.

Venue clients live in ``tapeflow/venues/<venue>/client.py`` and subclass :class:`Connector`.

The names below are loaded on first use (PEP 562 ``__getattr__``): the connector stack pulls in
aiohttp and pandas (~0.8 s), and every ``tapeflow`` command imports ``tapeflow.live.cli`` to
register ``tapeflow live``, so an eager import made ``tapeflow --help`` pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tapeflow.live.connector import Connector, ConnectorSettings
    from tapeflow.live.frames import REST, WS, LiveBatch, RawFrame, StatusLog
    from tapeflow.live.pacing import Backoff, TokenBucket, retry_after_s
    from tapeflow.live.sync import SyncTracker
    from tapeflow.live.thread import LiveThread, iterate_in_thread

# public name -> the submodule that defines it
_LAZY = {
    "Connector": "connector", "ConnectorSettings": "connector",
    "REST": "frames", "WS": "frames", "LiveBatch": "frames", "RawFrame": "frames", "StatusLog": "frames",
    "Backoff": "pacing", "TokenBucket": "pacing", "retry_after_s": "pacing",
    "SyncTracker": "sync",
    "LiveThread": "thread", "iterate_in_thread": "thread",
}

__all__ = [
    "REST", "WS", "Backoff", "Connector", "ConnectorSettings", "LiveBatch", "LiveThread", "RawFrame",
    "StatusLog", "SyncTracker", "TokenBucket", "iterate_in_thread", "retry_after_s",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
