"""Coinbase's oracle: with no sequence or checksum in level2, the rebuilt book must never be
crossed (best bid > best ask) at the end of any message once its snapshot has synced it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.reference import CROSSED, RESYNC
from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import F_LAST
from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.coinbase.parse import decode


def uncrossed(deltas: pa.Table, what: str) -> VerifyReport:
    """Replay each symbol's ``book_delta`` rows; count message ends (``F_LAST``) where the synced
    book is not crossed.

    Args:
        deltas: ``book_delta`` rows of any number of symbols, in arrival order.
        what: the report's noun, e.g. ``coinbase uncrossed books``.
    """
    ok = total = 0
    failures: list[str] = []
    for symbol in sorted(set(deltas.column("symbol").to_pylist())):
        rows = deltas.filter(pc.equal(deltas.column("symbol"), symbol))
        status = replay_l2(rows, levels=1).bbo["status"]
        ends = (rows.column("flags").to_numpy() & F_LAST != 0) & (status != RESYNC)
        total += int(ends.sum())
        bad = np.flatnonzero(ends & (status == CROSSED))
        ok += int(ends.sum()) - len(bad)
        failures += [f"{symbol}: crossed after row {int(i)} (ts_recv_ns "
                     f"{rows.column('ts_recv_ns')[int(i)].as_py()})" for i in bad[:10]]
    return VerifyReport(ok, total, what, failures)


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode the captures and check the book is uncrossed at every synced message end.

    Returns:
        One report, ``verified: N of N coinbase uncrossed books``.
    """
    tables = merge(list(decode(paths)))
    deltas = tables.get("book_delta")
    report = uncrossed(deltas, "coinbase uncrossed books") if deltas is not None else \
        VerifyReport(0, 0, "coinbase uncrossed books", ["no book_delta rows"])
    report.details = {k: t.num_rows for k, t in tables.items()}
    return [report]
