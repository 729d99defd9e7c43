"""Bybit oracles: v5 ``u`` rises by exactly 1 per orderbook message; v2 deltas touch held ids only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.bybit.parse import BybitDecoder
from tapeflow.wire.registry import VerifyReport

_MAX_FAILURES = 20


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode ``paths`` and check them.

    Returns:
        ``bybit orderbook updates chained`` (v5 deltas after a snapshot whose ``u`` follows on)
        and, when the input holds legacy v2 books, ``bybit orderBookL2 deltas on held ids``.
    """
    decoder = BybitDecoder()
    for _ in decoder.run(paths):
        pass
    stats = decoder.stats
    reports = []
    if stats.checked or not decoder.legacy_checked:
        reports.append(VerifyReport(
            ok=stats.chained, total=stats.checked, what="bybit orderbook updates chained",
            failures=stats.gaps[:_MAX_FAILURES],
            details={"snapshots": stats.snapshots, "before_first_snapshot": stats.unsynced},
        ))
    if decoder.legacy_checked:
        reports.append(VerifyReport(
            ok=decoder.legacy_ok, total=decoder.legacy_checked, what="bybit orderBookL2 deltas on held ids",
            failures=decoder.legacy_failures[:_MAX_FAILURES],
        ))
    return reports
