"""Binance oracles: the depth chain after snapshot sync, and bookTicker against the rebuilt book.

1. Every depth diff after its symbol's snapshot links to the one before it (futures ``pu``,
   spot ``U == previous u + 1``), the first one bridging the snapshot's ``lastUpdateId``.
2. A bookTicker whose ``u`` equals the ``u`` of an applied depth diff shows exactly the best bid
   and ask (price and size) of the book rebuilt up to that diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.reference import RESYNC
from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import F_LAST, F_SNAPSHOT, F_SUPERSEDED
from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.binance.parse import BinanceDecoder

_MAX_FAILURES = 20


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode ``paths`` and check them against both Binance oracles.

    Returns:
        Two reports: ``binance depth messages chained`` and ``binance bookTicker matches``.
    """
    decoder = BinanceDecoder()
    tables = merge(list(decoder.run(paths)))
    stats = decoder.stats
    chain = VerifyReport(
        ok=stats.chained, total=stats.checked, what="binance depth messages chained",
        failures=stats.gaps[:_MAX_FAILURES],
        details={"superseded": stats.superseded, "snapshots": stats.snapshots,
                 "before_first_snapshot": stats.unsynced, "gaps": len(stats.gaps)},
    )
    deltas = tables.get("book_delta")
    quotes = tables.get("quote")
    ticker = bookticker_matches(deltas, quotes) if deltas is not None and quotes is not None else \
        VerifyReport(0, 0, "binance bookTicker matches")
    return [chain, ticker]


def bookticker_matches(deltas: pa.Table, quotes: pa.Table) -> VerifyReport:
    """Compare each bookTicker with the book rebuilt up to the depth diff of the same ``u``.

    Only diffs the book applied while synced count: superseded diffs and diffs replayed while
    the book is in RESYNC (before the first snapshot, after a gap) are not comparable.
    """
    ok = total = 0
    failures: list[str] = []
    keys = set(zip(quotes.column("venue").to_pylist(), quotes.column("symbol").to_pylist(), strict=True))
    for venue, symbol in sorted(keys):
        d = _rows_of(deltas, venue, symbol)
        q = _rows_of(quotes, venue, symbol)
        if not d.num_rows or not q.num_rows:
            continue
        bbo = replay_l2(d, levels=1).bbo
        flags = d.column("flags").to_numpy()
        ends = np.flatnonzero((flags & F_LAST != 0) & (flags & (F_SNAPSHOT | F_SUPERSEDED) == 0)
                              & (bbo["status"] != RESYNC))
        row_of_u = dict(zip(d.column("sequence").to_numpy()[ends].tolist(), ends.tolist(), strict=True))
        q_u = q.column("sequence").to_numpy()
        want = {n: q.column(n).to_numpy() for n in
                ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")}
        for j, u in enumerate(q_u.tolist()):
            row = row_of_u.get(u)
            if row is None:
                continue
            total += 1
            got = (bbo["bid_px"][row], bbo["bid_sz"][row], bbo["ask_px"][row], bbo["ask_sz"][row])
            exp = tuple(want[n][j] for n in want)
            if got == exp:
                ok += 1
            elif len(failures) < _MAX_FAILURES:
                failures.append(f"{venue} {symbol} bookTicker u={u}: ticker {exp} != book {got}")
    return VerifyReport(ok=ok, total=total, what="binance bookTicker matches", failures=failures)


def _rows_of(table: pa.Table, venue: str, symbol: str) -> pa.Table:
    mask = pc.and_(pc.equal(table.column("venue"), venue), pc.equal(table.column("symbol"), symbol))
    return table.filter(mask)
