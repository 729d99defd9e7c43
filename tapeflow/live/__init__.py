"""Live venue connectors: the shared session loop, journal-first micro-batches, thread adapter.

Venue clients live in ``tapeflow/venues/<venue>/client.py`` and subclass :class:`Connector`.
"""

from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.live.frames import REST, WS, LiveBatch, RawFrame, StatusLog
from tapeflow.live.pacing import Backoff, TokenBucket, retry_after_s
from tapeflow.live.sync import SyncTracker
from tapeflow.live.thread import LiveThread, iterate_in_thread

__all__ = [
    "REST", "WS", "Backoff", "Connector", "ConnectorSettings", "LiveBatch", "LiveThread", "RawFrame",
    "StatusLog", "SyncTracker", "TokenBucket", "iterate_in_thread", "retry_after_s",
]
