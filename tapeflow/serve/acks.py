"""Acknowledgements of alerts made through the API, kept in an append-only JSON-lines file.

The alerts engine runs inside the live flow (``tapeflow live --alerts``), another process: the
server records who acknowledged which alert as :class:`tapeflow.alerts.engine.Ack` values in the
file :mod:`tapeflow.alerts.acks` defines, which the engine's stage tails (an acknowledged alert's
follow-ups are held back, docs/alerts.md), and only for alerts it can see (in the lake's delivery
ledger or relayed live).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tapeflow.alerts.acks import AckReader, append
from tapeflow.alerts.engine import Ack


class AckStore:
    """Acknowledgements by alert id; the first one stands (as in the engine).

    Args:
        path: the JSON-lines file (created on the first acknowledgement).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._acks: dict[str, Ack] = {}
        self._reader = AckReader(self.path)
        self._refresh()

    def _refresh(self) -> None:
        # another server (or an earlier run) may have appended: the file is the truth
        for alert_id, ack in self._reader.read_new():
            self._acks.setdefault(alert_id, ack)

    def get(self, alert_id: str) -> Ack | None:
        with self._lock:
            self._refresh()
            return self._acks.get(alert_id)

    def acknowledge(self, alert_id: str, by: str) -> tuple[Ack, bool]:
        """Record ``by`` acknowledging ``alert_id``; returns the standing ack and whether it is new.

        Raises:
            StorageError: the file cannot be written.
        """
        with self._lock:
            self._refresh()
            if alert_id in self._acks:
                return self._acks[alert_id], False
            ack = Ack(by, time.time_ns())
            append(self.path, alert_id, ack)
            self._acks[alert_id] = ack
            return ack, True
