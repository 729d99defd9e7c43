"""One underlying-day's cross-strike signals from what the lake holds: the ``option_ticker`` rows of
its options (the ``option_tickers`` asset) and their ``trade`` rows (the day pipeline's ingest of the
venue's option instruments, or any writer of them), through ``tapeflow.signals.cross_strike.detect``.
The Dagster asset ``option_flow_signals`` (``assets/option_signals.py``) wires this."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import BadInput
from tapeflow.options.instruments import parse_option_name
from tapeflow.options.landing import UnderlyingDay
from tapeflow.schemas import concat
from tapeflow.schemas.options import OPTION_TICKER
from tapeflow.schemas.records import SIGNAL, TRADE
from tapeflow.signals import cross_strike
from tapeflow.signals.config import Thresholds
from tapeflow.storage import lake as lake_store


def day_inputs(lake: Path, want: UnderlyingDay) -> tuple[pa.Table, pa.Table]:
    """``want``'s option trades and option tickers in the lake (empty tables where there are none)."""
    tickers, trades = [], []
    for record, out in ((OPTION_TICKER, tickers), (TRADE, trades)):
        for venue, symbol, date, _ in lake_store.partitions(record, lake, venue=want.venue, date=want.date):
            if _underlying(symbol) == want.underlying:
                out.append(lake_store.read(record, lake, venue=venue, symbol=symbol, date=date))
    return concat(TRADE, trades), concat(OPTION_TICKER, tickers)


def day_signals(lake: Path, want: UnderlyingDay, thresholds: Thresholds, preset: str | None = None
                ) -> tuple[pa.Table, dict[str, int]]:
    """The day's ``signal`` rows (kind ``cross_strike``, symbol the underlying) and what they read:
    option trades, option tickers, and the hours the trades span."""
    trades, tickers = day_inputs(lake, want)
    params = thresholds.for_instrument("cross_strike", want.underlying, preset)
    if not trades.num_rows or not tickers.num_rows:
        out = SIGNAL.empty_table()
    else:
        out = cross_strike.detect(trades, tickers, params)
        out = out.filter(pc.equal(out.column("symbol"), want.underlying)) if out.num_rows else out
    ts = trades.column("ts_event_ns")
    span_h = (pc.max(ts).as_py() - pc.min(ts).as_py()) / 3.6e12 if trades.num_rows else 0.0
    return out, {"option_trades": trades.num_rows, "option_tickers": tickers.num_rows,
                 "trade_span_hours": round(span_h, 4)}


def _underlying(symbol: str) -> str | None:
    try:
        return parse_option_name(symbol).underlying
    except BadInput:
        return None  # a future, the perpetual, a combo: no option of any underlying
