"""Rows the bus could not publish: the closed set of reasons and the dead-letter file.

A row the bus gives up on is never dropped silently: it is appended, with its stream, its id,
the reason and a detail, to a JSON-lines file (one object per line, the row itself under ``row``),
from which an operator can read or republish it (docs/bus.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import orjson


class Drop(StrEnum):
    """Why the bus dead-lettered a row (the ``reason`` of a dead-letter line)."""

    UNAVAILABLE = "unavailable"  # Redis did not answer for the whole retry budget, or at the end of the run
    BUFFER_FULL = "buffer_full"  # more rows waited for Redis than the buffer bound
    REFUSED = "refused"  # Redis answered the entry with an error other than a duplicate id


def write_dead_letters(path: Path, entries: Sequence[tuple[str, str, bytes]], reason: Drop,
                       detail: str) -> None:
    """Append ``(stream, id, row)`` entries to the dead-letter file ``path`` (created with its folder).

    Each line is ``{"ts_ns", "reason", "detail", "stream", "id", "row"}`` with ``row`` the entry's
    JSON object as it would have been published.
    """
    if not entries:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    head = orjson.dumps({"ts_ns": time.time_ns(), "reason": str(reason), "detail": detail})[:-1]
    with open(path, "ab") as fh:
        fh.write(b"".join(
            head + b',"stream":' + orjson.dumps(stream) + b',"id":' + orjson.dumps(entry_id)
            + b',"row":' + row + b"}\n"
            for stream, entry_id, row in entries))


def read_dead_letters(path: Path) -> list[dict[str, object]]:
    """Every line of a dead-letter file as a dict (none when the file does not exist)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
