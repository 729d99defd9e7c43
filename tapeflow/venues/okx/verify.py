"""OKX's own oracles: the signed CRC32 ``checksum`` and the ``prevSeqId`` -> ``seqId`` chain."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.okx.parse import OkxDecoder
from tapeflow.wire.registry import VerifyReport


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode the captures; check every book checksum and every update's ``prevSeqId``.

    Returns:
        ``verified: N of N okx checksums`` and ``verified: M of M okx seqId links`` (the latter
        only when the messages carry ``seqId``: captures before 2023 do not); failures name
        file:line and the instrument.
    """
    decoder = OkxDecoder()
    rejected = sum(c.counts().get("rejected", 0) for c in decoder.run(paths))
    s = decoder.stats
    crc_failures = [f for f in s.failures if "checksum" in f]
    link_failures = [f for f in s.failures if "prevSeqId" in f]
    details = {"instruments": len(decoder.books), "rejected": rejected}
    reports = [VerifyReport(s.ok, s.total, "okx checksums", crc_failures, details)]
    if s.links_total or not s.total:  # the older message shape has no seqId chain to report
        reports.append(VerifyReport(s.links_ok, s.links_total, "okx seqId links", link_failures, details))
    return reports
