"""Acknowledgements of alerts made through the API, kept in an append-only JSON-lines file.

The alerts engine runs inside the live flow (``tapeflow live --alerts``), another process: the
server records who acknowledged which alert as :class:`tapeflow.alerts.engine.Ack` values, in a
file both can read, and only for alerts it can see (in the lake's delivery ledger or relayed live).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson

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
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                try:
                    entry = orjson.loads(line)
                    self._acks.setdefault(str(entry["alert_id"]), Ack(str(entry["by"]), int(entry["at_ns"])))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line torn by a crash mid-append: the acknowledgement was never answered

    def get(self, alert_id: str) -> Ack | None:
        return self._acks.get(alert_id)

    def acknowledge(self, alert_id: str, by: str) -> tuple[Ack, bool]:
        """Record ``by`` acknowledging ``alert_id``; returns the standing ack and whether it is new."""
        with self._lock:
            if alert_id in self._acks:
                return self._acks[alert_id], False
            ack = Ack(by, time.time_ns())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = orjson.dumps({"alert_id": alert_id, "by": by, "at_ns": ack.at_ns}) + b"\n"
            with self.path.open("ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._acks[alert_id] = ack
            return ack, True
