"""The outbox's journal: what is queued survives a restart of tapeflow.

One JSON line per event, appended and fsynced before the call that caused it returns:
``{"op": "add", "channel", "key", "alert"}`` when an alert is queued on a channel and
``{"op": "done", "key"}`` when it left the queue (delivered or dead-lettered). Opening the journal
gives back the adds without a done, in their order, and rewrites the file to just those (atomic
rename), so it stays as long as the backlog. A torn last line (a crash mid-write) is dropped: its
call never returned, so nobody was told it was queued.

Beside it, ``<stem>.ledger.jsonl`` keeps every delivery attempt's ledger row (one JSON line each,
appended and fsynced per delivery pass), never rewritten: the batch side
(:mod:`tapeflow.alerts.ledger`, ``tapeflow alerts ledger``) loads it into the lake and ClickHouse
whatever the process that delivered could write.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tapeflow.alerts.alert import Alert
from tapeflow.errors import StorageError


class Journal:
    """An append-only outbox journal at ``path`` (created with its folder when missing).

    Raises:
        StorageError: the file cannot be read, rewritten or opened for appending.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.ledger_path = ledger_path(self.path)
        self._ledger_out: Any = None
        self.restored: list[tuple[str, str, Alert]] = []  # (channel, key, alert), in queue order
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot read the alerts outbox journal: {exc}") from exc
        pending: dict[str, dict[str, Any]] = {}
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn line from a crash mid-append
            if entry.get("op") == "add":
                pending[entry["key"]] = entry
            elif entry.get("op") == "done":
                pending.pop(entry["key"], None)
        self.restored = [(e["channel"], e["key"], _alert(e["alert"])) for e in pending.values()]
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("wb") as out:
                out.writelines(json.dumps(e, sort_keys=True).encode() + b"\n" for e in pending.values())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            self._out = self.path.open("ab")
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot rewrite the alerts outbox journal: {exc}") from exc

    def added(self, entries: list[tuple[str, str, Alert]]) -> None:
        """Record alerts queued on channels (``(channel, key, alert)``)."""
        self._write([{"op": "add", "channel": c, "key": k, "alert": a.payload()} for c, k, a in entries])

    def ledger(self, rows: list[dict[str, Any]]) -> None:
        """Record delivery attempts' ledger rows (:data:`tapeflow.schemas.alerts.ALERT_DELIVERY` columns).

        Raises:
            StorageError: the ledger file cannot be appended to.
        """
        if not rows:
            return
        try:
            if self._ledger_out is None:
                self._ledger_out = self.ledger_path.open("ab")
            self._ledger_out.write(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows))
            self._ledger_out.flush()
            os.fsync(self._ledger_out.fileno())
        except OSError as exc:
            raise StorageError(f"{self.ledger_path}: cannot append to the alerts ledger journal: "
                               f"{exc}") from exc

    def done(self, key: str) -> None:
        """Record that the delivery ``key`` left its queue."""
        self._write([{"op": "done", "key": key}])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        try:
            self._out.write(b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in entries))
            self._out.flush()
            os.fsync(self._out.fileno())
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot append to the alerts outbox journal: {exc}") from exc

    def close(self) -> None:
        self._out.close()
        if self._ledger_out is not None:
            self._ledger_out.close()


def ledger_path(journal: Path) -> Path:
    """The ledger rows' file of the outbox journal ``journal``."""
    return journal.with_name(journal.stem + ".ledger.jsonl")


def _alert(payload: dict[str, Any]) -> Alert:
    confidence = payload.get("confidence")
    return Alert(**{**payload, "confidence": math.nan if confidence is None else float(confidence)})
