"""BitMEX's oracle: the book rebuilt from orderBookL2 is never crossed at a message end after
its partial (BitMEX publishes neither sequence numbers nor checksums on this table)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.bitmex.parse import decode
from tapeflow.venues.coinbase.verify import uncrossed


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode the captures and check every synced book is uncrossed at each message end.

    Returns:
        One report, ``verified: N of N bitmex uncrossed books``.
    """
    tables = merge(list(decode(paths)))
    deltas = tables.get("book_delta")
    report = uncrossed(deltas, "bitmex uncrossed books") if deltas is not None else \
        VerifyReport(0, 0, "bitmex uncrossed books", ["no book_delta rows"])
    report.details = {k: t.num_rows for k, t in tables.items()}
    return [report]
