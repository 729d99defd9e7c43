"""Time bars from ``trade`` tables: the table-level wrapper around ``kernels.bars``.

Bars are per venue and symbol, bucketed by ``ts_event_ns`` aligned to the UNIX epoch (so ``1d``
is a UTC day), with open/close the first/last trade in input order. Only buckets holding at
least one trade produce a bar. This is the rule that rebuilds Databento's own OHLCV-1m from its
trades schema exactly (every trade record, per instrument, by ``ts_event``).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.bars import Bars
from kernels.bars import time_bars as _time_bars_kernel
from kernels.bars_threshold import NOTIONAL, TICK, VOLUME, threshold_bar_ids
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BAR, F_GAP, F_MAYBE_BAD_BOOK, TRADE

_UNIT_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_INTERVAL = re.compile(r"^([1-9]\d*)([smhd])$")
STANDARD_INTERVALS = (
    "1s",
    "5s",
    "15s",
    "30s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "12h",
    "1d",
)


def interval_ns(interval: str) -> int:
    """Length of a bar interval such as ``1s``, ``15m``, ``4h``, ``1d``, in ns.

    Raises:
        ConfigError: the text is not ``<positive integer><s|m|h|d>``.
    """
    m = _INTERVAL.match(interval.strip()) if isinstance(interval, str) else None
    if m is None:
        raise ConfigError(
            f"bar interval {interval!r} is not <n><s|m|h|d>, e.g. {', '.join(STANDARD_INTERVALS[:6])}"
        )
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    encoded = pc.dictionary_encode(column).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def time_bars(trades: pa.Table, interval: str) -> pa.Table:
    """Build ``bar`` records from a ``trade`` table.

    Args:
        trades: rows of the ``trade`` record (any venues and symbols, in arrival order).
        interval: ``<n><s|m|h|d>``, e.g. ``1s`` ``5s`` ``1m`` ``15m`` ``1h`` ``1d``.

    Returns:
        A ``bar`` table, one row per venue, symbol and non-empty bucket, sorted by venue, symbol
        and time. ``ts_recv_ns`` is the latest capture time among the bar's trades; ``flags`` is
        ``F_MAYBE_BAD_BOOK`` when any of its trades carried ``F_GAP`` or ``F_MAYBE_BAD_BOOK``;
        ``revision`` is 0 (only the live bars restate).

    Raises:
        ConfigError: a bad interval.
        ValueError: the table is not a ``trade`` table, or holds a negative size.
    """
    step_ns = interval_ns(interval)
    _check_trades(trades, "time_bars")
    if trades.num_rows == 0:
        return BAR.empty_table()
    group, venues, symbols = _groups(trades)
    col = _trade_columns(trades)
    bars = _time_bars_kernel(
        group, col["ts_event_ns"], col["price_nanos"], col["size_nanos"], col["aggressor_side"], step_ns
    )
    return _table(bars, bars.open_ns, col, venues, symbols, interval)


def _check_trades(trades: pa.Table, who: str) -> None:
    if trades.schema.names != TRADE.column_names:
        raise ValueError(f"{who} needs a trade table, got columns {trades.schema.names}")


def _groups(trades: pa.Table) -> tuple[np.ndarray, pa.Array, pa.Array]:
    venue_code, venues = _codes(trades.column("venue"))
    symbol_code, symbols = _codes(trades.column("symbol"))
    return venue_code * len(symbols) + symbol_code, venues, symbols


def _trade_columns(trades: pa.Table) -> dict[str, np.ndarray]:
    return {
        n: trades.column(n).to_numpy()
        for n in ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side", "flags")
    }


def _table(bars: Bars, open_ns: np.ndarray, col: dict[str, np.ndarray], venues: pa.Array, symbols: pa.Array,
           interval: str) -> pa.Table:
    ts_recv = np.maximum.reduceat(col["ts_recv_ns"][bars.order], bars.starts)
    touched = np.bitwise_or.reduceat(col["flags"][bars.order], bars.starts) & (F_GAP | F_MAYBE_BAD_BOOK)
    flags = np.where(touched != 0, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
    k = bars.group.shape[0]
    columns = {
        "ts_event_ns": open_ns,
        "ts_recv_ns": ts_recv,
        "venue": venues.take(pa.array(bars.group // len(symbols))).cast(pa.string()),
        "symbol": symbols.take(pa.array(bars.group % len(symbols))).cast(pa.string()),
        "interval": pa.array([interval] * k, pa.string()),
        "open_price_nanos": bars.open_price_nanos,
        "high_price_nanos": bars.high_price_nanos,
        "low_price_nanos": bars.low_price_nanos,
        "close_price_nanos": bars.close_price_nanos,
        "volume_nanos": bars.volume_nanos,
        "vwap_price_nanos": bars.vwap_price_nanos,
        "trade_count": bars.trade_count,
        "buy_volume_nanos": bars.buy_volume_nanos,
        "sell_volume_nanos": bars.sell_volume_nanos,
        "flags": flags,
        "revision": np.zeros(k, np.uint32),
    }
    table = BAR.table(columns)
    return table.sort_by([("venue", "ascending"), ("symbol", "ascending"), ("ts_event_ns", "ascending")])


def _threshold_bars(trades: pa.Table, mode: int, threshold: int, interval: str, who: str) -> pa.Table:
    integral = isinstance(threshold, int | np.integer) and not isinstance(threshold, bool)
    if not integral or not 0 < threshold < 2**63:
        raise ConfigError(f"{who}: the threshold must be an integer in 1..2**63-1, was {threshold!r}")
    _check_trades(trades, who)
    if trades.num_rows == 0:
        return BAR.empty_table()
    group, venues, symbols = _groups(trades)
    col = _trade_columns(trades)
    number = threshold_bar_ids(group, col["price_nanos"], col["size_nanos"], mode, int(threshold))
    # The bar number plays the bucket (interval 1), so the time-bar kernel aggregates each bar in input
    # order; the bar's time is its first trade's.
    bars = _time_bars_kernel(group, number, col["price_nanos"], col["size_nanos"], col["aggressor_side"], 1)
    return _table(bars, col["ts_event_ns"][bars.order[bars.starts]], col, venues, symbols, interval)


def tick_bars(trades: pa.Table, n: int) -> pa.Table:
    """Bars of ``n`` trades each, per venue and symbol, in input order (interval ``tick:<n>``).

    ``ts_event_ns`` is the first trade's venue time. The last bar of an instrument holds the trades
    after its last full bar and may be short (nothing is dropped).

    Raises:
        ConfigError: ``n`` is not a positive integer.
        ValueError: not a ``trade`` table, or a negative size.
    """
    return _threshold_bars(trades, TICK, n, f"tick:{n}", "tick_bars")


def volume_bars(trades: pa.Table, volume_nanos: int) -> pa.Table:
    """Bars closing at the trade that brings their volume to ``volume_nanos`` or more (``volume:<nanos>``).

    The trade that crosses the threshold is not split: it stays whole in the bar it closes, so a bar
    holds at least ``volume_nanos`` (and less than ``volume_nanos`` + its last trade's size), and
    the next bar starts from zero. The last bar of an instrument may be short.

    Raises:
        ConfigError: ``volume_nanos`` is not a positive integer.
        ValueError: not a ``trade`` table, or a negative size.
    """
    return _threshold_bars(trades, VOLUME, volume_nanos, f"volume:{volume_nanos}", "volume_bars")


def dollar_bars(trades: pa.Table, notional_nanos: int) -> pa.Table:
    """Bars closing once their traded notional ``sum(|price| * size)`` reaches ``notional_nanos``.

    Notional is in the price currency, 1e-9 units (``dollar:<nanos>``); it is compared exactly in
    128 bits (``price_nanos * size_nanos`` is in 1e-18 units). Crossing trades are not split, as
    in :func:`volume_bars`; the last bar of an instrument may be short.

    Raises:
        ConfigError: ``notional_nanos`` is not a positive integer.
        ValueError: not a ``trade`` table, or a negative size.
    """
    return _threshold_bars(trades, NOTIONAL, notional_nanos, f"dollar:{notional_nanos}", "dollar_bars")


def bars_for(trades: pa.Table, interval: str) -> pa.Table:
    """Bars of any kind by interval text: ``1m`` (time), ``tick:100``, ``volume:<nanos>``, ``dollar:<nanos>``.

    Raises:
        ConfigError: the text is none of these.
    """
    kind, _, amount = interval.partition(":")
    builders = {"tick": tick_bars, "volume": volume_bars, "dollar": dollar_bars}
    if not amount:
        return time_bars(trades, interval)
    if kind not in builders or not amount.isdigit():
        raise ConfigError(f"bar interval {interval!r} is not <n><s|m|h|d>, tick:<n>, volume:<nanos> or "
                          "dollar:<nanos>")
    return builders[kind](trades, int(amount))
