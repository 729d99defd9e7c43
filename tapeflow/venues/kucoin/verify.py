"""KuCoin oracle: every l2update after its symbol's REST snapshot continues the sequence chain."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.kucoin.parse import KucoinDecoder
from tapeflow.wire.registry import VerifyReport

_MAX_FAILURES = 20


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode ``paths`` and report ``kucoin l2 updates chained`` (``sequenceStart`` follows on)."""
    decoder = KucoinDecoder()
    for _ in decoder.run(paths):
        pass
    stats = decoder.stats
    return [VerifyReport(
        ok=stats.chained, total=stats.checked, what="kucoin l2 updates chained",
        failures=stats.gaps[:_MAX_FAILURES],
        details={"superseded": stats.superseded, "snapshots": stats.snapshots,
                 "before_first_snapshot": stats.unsynced, "gaps": len(stats.gaps)},
    )]
