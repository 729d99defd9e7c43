"""Every detector over every real capture of ``../shared/data``: the runs behind docs/signals.md.

``run_case`` does what ``tapeflow signals detect`` does (``detect_format``: the one book path, then
``detect_tables`` and, where order ids exist, ``detect_orders``) and also keeps the input's span,
so that ``tapeflow.signals.report`` can state rates per hour (capture time, first to last
record); a file longer than ``max_hours`` is
judged on its first ``max_hours`` only. ``tapeflow signals report`` is the command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.grid import instrument_groups
from tapeflow.errors import TapeflowError
from tapeflow.schemas.core import concat
from tapeflow.schemas.records import F_SNAPSHOT, ORDER_EVENT, SIGNAL, TRADE
from tapeflow.signals.config import Thresholds
from tapeflow.signals.report import FileRun

_NS_PER_HOUR = 3_600 * 10**9
_LOBSTER_AMZN = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1/AMZN_2012-06-21_34200000_57600000_{}_1.csv"
_LOBSTER_AAPL = "lobster/AAPL_2012-06-21_level10_first999/AAPL_2012-06-21_34200000_57600000_{}_10.csv"


@dataclass(frozen=True)
class Case:
    """One real input: its label, ``--format`` and files relative to the real-data folder."""

    label: str
    format_name: str
    paths: tuple[str, ...]


# every capture of ../shared/data/README.md that `tapeflow signals detect` reads; what it cannot
# read is in UNREAD with the reason
CASES: tuple[Case, ...] = (
    Case("LOBSTER AMZN 2012-06-21 L1", "lobster",
         (_LOBSTER_AMZN.format("message"), _LOBSTER_AMZN.format("orderbook"))),
    Case("LOBSTER AAPL 2012-06-21 L10, first 999", "lobster",
         (_LOBSTER_AAPL.format("message"), _LOBSTER_AAPL.format("orderbook"))),
    Case("Databento ES MBO 2023-12-24", "dbn", ("databento/glbx/esh4-glbx-mdp3-20231224.mbo.dbn.zst",)),
    Case("Databento ES MBO 2023-12-25", "dbn", ("databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst",)),
    Case("Databento ES trades + MBP-1 2024-07-01", "dbn",
         ("databento/glbx/futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
          "databento/glbx/futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst")),
    Case("Binance USD-M BTCUSDT 2024-08-08", "binance", ("binance/usdm_btcusdt_20240808.gz",)),
    Case("cryptofeed BINANCE spot", "binance", ("cryptofeed/BINANCE.ws.1.0", "cryptofeed/BINANCE.http.0.0")),
    Case("cryptofeed BINANCE_FUTURES", "binance",
         ("cryptofeed/BINANCE_FUTURES.ws.1.0", "cryptofeed/BINANCE_FUTURES.http.0.0")),
    Case("cryptofeed KRAKEN book-1000", "kraken", ("cryptofeed/KRAKEN.ws.50.0",)),
    Case("cryptofeed KRAKEN (small)", "kraken", ("cryptofeed/KRAKEN.ws.48.0",)),
    Case("cryptofeed COINBASE", "coinbase", ("cryptofeed/COINBASE.ws.28.0",)),
    Case("cryptofeed BYBIT v2", "bybit", ("cryptofeed/BYBIT.ws.25.0",)),
    Case("Bybit v5 XRPUSDT ob500", "bybit", ("bybit/xrpusdt-ob500.data.zip",)),
    Case("cryptofeed KUCOIN", "kucoin", ("cryptofeed/KUCOIN.ws.1.0", "cryptofeed/KUCOIN.http.0.0")),
    Case("cryptofeed BITMEX", "bitmex", ("cryptofeed/BITMEX.ws.1.0",)),
    Case("Tardis binance-futures trades + quotes", "tardis",
         ("tardis/tardis_trades.csv", "tardis/tardis_quotes.csv")),
)

UNREAD: dict[str, str] = {
    "options/, derivatives/": "option and derivative tickers, funding, liquidations: no trades or book",
    "iqfeed/": "no IQFeed decoder in tapeflow.wire.registry",
    "databento/fixtures/, databento/api/": "decoder test vectors and mock-gateway lines, not captures",
    "tardis/ small fixtures": "a few rows each (book snapshots, one venue's trades): spans of seconds",
}


def run_case(root: Path, case: Case, thresholds: Thresholds, *, max_hours: float | None = None) -> FileRun:
    """Decode ``case`` under ``root``, rebuild its books and run every detector.

    Returns:
        Its ``FileRun``; ``signals`` is None (with the reason in ``note``) when a file is missing or
        the input cannot be read.
    """
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.signals.detect import detect_tables, grid_and_levels, instruments_of
    from tapeflow.signals.orders import detect_orders
    from tapeflow.wire.capture import merge

    paths = [root / p for p in case.paths]
    missing = [str(p) for p in case.paths if not (root / p).is_file()]
    if missing:
        return FileRun(case.label, case.format_name, None, note=f"skipped: missing {', '.join(missing)}")
    grid_ns, levels = grid_and_levels(thresholds)
    chunks: list = []
    try:
        snapshots, _ = snapshots_for_format(case.format_name, paths, levels=levels, interval_ns=grid_ns,
                                            on_chunk=chunks.append)
    except TapeflowError as exc:
        return FileRun(case.label, case.format_name, None, note=f"skipped: {exc}")
    tables = merge(chunks)
    trades = tables.get(TRADE.name, TRADE.empty_table())
    events = tables.get(ORDER_EVENT.name)
    first_ns, last_ns = _span(*tables.values())
    note = ""
    if max_hours is not None and last_ns - first_ns > max_hours * _NS_PER_HOUR:
        end_ns = first_ns + int(max_hours * _NS_PER_HOUR)
        note = f"cut: first {max_hours:g} h of {(last_ns - first_ns) / _NS_PER_HOUR:.3g} h"
        trades, snapshots = _before(trades, end_ns), _before(snapshots, end_ns)
        events = None if events is None else _before(events, end_ns)
        last_ns = min(last_ns, end_ns)
    signals = detect_tables(trades, snapshots, thresholds, order_ids=instruments_of(events))
    if events is not None and events.num_rows:
        signals = concat(SIGNAL, [signals, *detect_orders(events, snapshots, thresholds)])
    instruments = {(v, s) for t in (trades, snapshots) if t.num_rows for v, s, _ in instrument_groups(t)}
    return FileRun(case.label, case.format_name, signals, span_ns=max(0, last_ns - first_ns),
                   instruments=len(instruments), note=note)


def run_all(root: Path, thresholds: Thresholds, *, cases: Sequence[Case] = CASES,
            max_hours: float | None = None,
            progress: Callable[[str], object] = lambda line: print(line, file=sys.stderr, flush=True),
            ) -> list[FileRun]:
    """``run_case`` over ``cases``, printing one progress line before and after each."""
    runs = []
    for i, case in enumerate(cases, 1):
        progress(f"[{i}/{len(cases)}] {case.label} ({case.format_name}) ...")
        t0 = time.monotonic()
        run = run_case(root, case, thresholds, max_hours=max_hours)
        got = run.note if run.signals is None else f"{run.signals.num_rows} signals over {run.hours:.3g} h"
        progress(f"[{i}/{len(cases)}] {case.label}: {got} ({time.monotonic() - t0:.1f} s)")
        runs.append(run)
    return runs


def unread_notes() -> str:
    """Markdown list of the data folders the report does not run over, and why."""
    return "\n".join(f"- `{where}`: {why}" for where, why in UNREAD.items()) + "\n"


def _span(*tables: pa.Table) -> tuple[int, int]:
    """First and last capture time over the decoded records, a vendor's snapshot replay left out
    (an MBO file's start-of-day snapshot is stamped at midnight, hours before the market opens);
    not the book grid, whose rows are rounded to it."""
    firsts, lasts = [], []
    for t in tables:
        if t.num_rows and "ts_recv_ns" in t.column_names:
            ts = t.column("ts_recv_ns").to_numpy()
            if "flags" in t.column_names:
                ts = ts[(t.column("flags").to_numpy() & F_SNAPSHOT) == 0]
            if ts.size == 0:
                continue
            firsts.append(int(np.min(ts)))
            lasts.append(int(np.max(ts)))
    return (min(firsts), max(lasts)) if firsts else (0, 0)


def _before(table: pa.Table, end_ns: int) -> pa.Table:
    return table.filter(pc.less(table.column("ts_recv_ns"), pa.scalar(end_ns, pa.int64())))
