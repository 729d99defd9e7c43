"""Kraken's own oracle: the CRC32 ``c`` carried by every book update."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.kraken.parse import KrakenDecoder
from tapeflow.wire.registry import VerifyReport


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode the captures and check every book checksum against the rebuilt book.

    Returns:
        One report, ``verified: N of N kraken checksums``; failures name file:line and pair.
    """
    decoder = KrakenDecoder()
    rejected = sum(c.counts().get("rejected", 0) for c in decoder.run(paths))
    s = decoder.stats
    return [VerifyReport(ok=s.ok, total=s.total, what="kraken checksums", failures=list(s.failures),
                         details={"pairs": len(decoder.books), "rejected": rejected})]
