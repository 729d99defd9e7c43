"""The journal: every raw frame a live connector receives, append-only, per venue and UTC day.

Layout ``<root>/<venue>/<YYYY-MM-DD>.jsonl`` (the day of the frame's capture time), one frame per
line as ``<recv_ns> <payload>``: the ``ns`` flavour :mod:`tapeflow.wire.capture` already reads,
so ``tapeflow book --format binance <root>/binance-usdm/2026-11-21.jsonl`` decodes a journal with
the same decoder the live connector used. The journal is the source of truth: a window that went
wrong live is rebuilt from it.

Each line ends with ``\\n``; a line break inside a payload (legal only as JSON whitespace, never
inside a JSON string) is written as a space so one frame stays one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tapeflow.errors import StorageError

if TYPE_CHECKING:
    from tapeflow.live.frames import RawFrame

_NS_PER_DAY = 86_400 * 1_000_000_000
_NEWLINES = bytes.maketrans(b"\r\n", b"  ")
_VENUE, _STAMP, _PAYLOAD = itemgetter(0), itemgetter(1), itemgetter(2)  # RawFrame's fields


def day_of(ts_ns: int) -> str:
    """The UTC day of a capture time, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts_ns // _NS_PER_DAY * 86_400, UTC).date().isoformat()


class Journal:
    """Append-only journal files under ``root``.

    Args:
        root: the journal folder (created on first write).
        fsync: also ``fsync`` after every append (survives a power cut, costs a disk flush per
            batch); by default each append is flushed to the operating system, which survives a
            crash of the process.
    """

    def __init__(self, root: Path | str, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._open: dict[tuple[str, str], tuple[IO[bytes], list[int], str]] = {}

    def path(self, venue: str, day: str | date) -> Path:
        """The journal file of ``venue`` on ``day``."""
        return self.root / venue / f"{day if isinstance(day, str) else day.isoformat()}.jsonl"

    def append(self, frames: Sequence[RawFrame]) -> list[str]:
        """Write ``frames`` (in order) and flush them before returning.

        Returns:
            each frame's location, ``<file name>:<line>``: the location a batch decode of the
            journal file gives the same frame, so dead letters name the same place live and in batch.

        Raises:
            StorageError: the journal folder or file cannot be written.
        """
        locations: list[str] = []
        try:
            stamps = list(map(_STAMP, frames))
            venues = list(map(_VENUE, frames))
            if stamps and min(stamps) // _NS_PER_DAY == max(stamps) // _NS_PER_DAY and \
                    venues.count(venues[0]) == len(venues):
                # one venue and UTC day (a batch almost always is): one run, no comparison per frame
                self._write(frames, stamps, locations)
            else:
                start = 0
                while start < len(frames):
                    # frames of one venue and UTC day go out in one write
                    venue, day_ns = venues[start], stamps[start] // _NS_PER_DAY
                    end = start + 1
                    while end < len(frames) and venues[end] == venue and stamps[end] // _NS_PER_DAY == day_ns:
                        end += 1
                    self._write(frames[start:end], stamps[start:end], locations)
                    start = end
            for fh, _, _ in list(self._open.values()):
                if fh.closed:  # a new day closed (and so flushed) it during this append
                    continue
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise StorageError(f"journal {self.root} refused a write: {exc}") from exc
        return locations

    def _write(self, run: Sequence[RawFrame], stamps: list[int], locations: list[str]) -> None:
        """Append frames of one venue and UTC day (their capture times ``stamps``) in one write and
        their locations to ``locations``: the formatting runs in C (``map``), not a Python loop."""
        fh, count, name = self._file(run[0].venue, day_of(stamps[0]))
        payloads = list(map(_PAYLOAD, run))
        blob = b"".join(payloads)
        if b"\n" in blob or b"\r" in blob:  # rare: JSON whitespace with a line break
            payloads = [p.translate(_NEWLINES) for p in payloads]
        fh.write(b"".join(map(b"%d %s\n".__mod__, zip(stamps, payloads, strict=True))))
        first = count[0] + 1
        count[0] += len(run)
        locations.extend(map(f"{name}:".__add__, map(str, range(first, count[0] + 1))))

    def files(self, venue: str, day: str | date | None = None) -> list[Path]:
        """Journal files of ``venue`` (one ``day`` or all), oldest first."""
        folder = self.root / venue
        if day is not None:
            p = self.path(venue, day)
            return [p] if p.is_file() else []
        return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []

    def close(self) -> None:
        """Close the open files (appending again reopens them)."""
        for fh, _, _ in self._open.values():
            fh.close()
        self._open.clear()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self, venue: str, day: str) -> tuple[IO[bytes], list[int], str]:
        key = (venue, day)
        hit = self._open.get(key)
        if hit is not None:
            return hit
        for (v, d), (fh, _, _) in list(self._open.items()):
            if v == venue and d != day:  # a new UTC day: the previous file is complete
                fh.close()
                del self._open[(v, d)]
        if not venue or "/" in venue or venue.startswith("."):
            raise StorageError(f"journal venue name {venue!r} is not a folder name")
        p = self.path(venue, day)
        p.parent.mkdir(parents=True, exist_ok=True)
        lines, partial = _count_lines(p) if p.exists() else (0, False)
        fh = open(p, "ab")
        if partial:
            # A crash cut the last line short: end it, so it stays one (rejected) line of its own.
            fh.write(b"\n")
            lines += 1
        hit = self._open[key] = (fh, [lines], p.name)
        return hit


def _count_lines(path: Path) -> tuple[int, bool]:
    # Appending to an existing day file: locations continue its line numbers.
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n, last != b"\n"
