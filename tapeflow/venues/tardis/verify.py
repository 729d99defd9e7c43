"""Oracle for Tardis files: trade ids are consecutive integers, so a dropped trade is an id gap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tapeflow.venues.tardis.parse import decode_all, file_kind
from tapeflow.wire.registry import VerifyReport

_MAX_LISTED = 20


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """One report per trades file whose ids are integers: every id after a symbol's first must be
    its predecessor + 1 (``ok`` counts those that are; ``total`` counts the ids checked).

    Files of other kinds, or with non-numeric ids (e.g. BitMEX UUIDs), have no oracle and give no
    report.
    """
    reports = []
    for path in map(Path, paths):
        if file_kind(path)[0] != "trades":
            continue
        trades = decode_all([path]).get("trade")
        if trades is None or trades.num_rows == 0:
            continue
        seq = trades.column("sequence").to_numpy()
        if (seq < 0).any():
            continue
        ok = total = 0
        failures: list[str] = []
        symbols = trades.column("symbol").to_numpy(zero_copy_only=False)
        for symbol in sorted(set(symbols.tolist())):
            ids = seq[symbols == symbol]
            steps = np.diff(ids)
            total += steps.size
            ok += int((steps == 1).sum())
            for i in np.nonzero(steps != 1)[0][:_MAX_LISTED].tolist():
                missing = int(steps[i]) - 1
                what = f"{missing} id(s) missing" if missing > 0 else "ids out of order or repeated"
                failures.append(f"{path.name} {symbol}: id {int(ids[i])} then {int(ids[i + 1])}: {what}")
        reports.append(
            VerifyReport(
                ok,
                total,
                "tardis trade ids contiguous",
                failures,
                details={"file": str(path), "trades": trades.num_rows},
            )
        )
    return reports
