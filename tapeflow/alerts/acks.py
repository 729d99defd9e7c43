"""The acknowledgements file: ``tapeflow serve`` appends, the alerts engine's process tails it.

The engine runs inside the live flow and the dashboard's API in ``tapeflow serve``: two processes,
and the embedded warehouse (chdb) admits one process per directory, so acknowledgements travel in a
plain file beside the engine's journal (``<lake>/_alerts/acks.jsonl`` by default on both sides).
One JSON line per acknowledgement, ``{"alert_id", "by", "at_ns"}``, appended with one ``write``
on an ``O_APPEND`` descriptor and fsynced before the API answers; the first line for an id stands.
A reader keeps its byte offset and reads only what was appended since, and leaves a line without
its newline (an append in progress) for the next read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tapeflow.alerts.engine import Ack
from tapeflow.errors import StorageError


def parse(line: bytes) -> tuple[str, Ack] | None:
    """One line of the file as ``(alert_id, Ack)``; None for a line that is not one (torn by a crash)."""
    try:
        entry = json.loads(line)
        return str(entry["alert_id"]), Ack(str(entry["by"]), int(entry["at_ns"]))
    except (ValueError, KeyError, TypeError):
        return None


def append(path: Path, alert_id: str, ack: Ack) -> None:
    """Append one acknowledgement and fsync it.

    Raises:
        StorageError: the file cannot be created or written.
    """
    line = json.dumps({"alert_id": alert_id, "by": ack.by, "at_ns": ack.at_ns}).encode() + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a line torn by a crash: end it, so this one parses
            os.write(fd, line)  # one write on O_APPEND: lines of two writers never interleave
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"{path}: cannot append an acknowledgement: {exc.strerror}") from exc


class AckReader:
    """Reads the acknowledgements appended to ``path`` since the previous :meth:`read_new`.

    Args:
        path: the file (it may not exist yet: nothing was acknowledged).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[tuple[str, Ack]]:
        """The complete lines appended since the last call, in file order (the first read: all)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot read acknowledgements: {exc.strerror}") from exc
        end = data.rfind(b"\n") + 1  # a line still being appended waits for the next read
        self._offset += end
        return [entry for line in data[:end].splitlines() if (entry := parse(line)) is not None]
