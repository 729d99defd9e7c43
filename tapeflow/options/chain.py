"""Option ticker rows -> ``option_ticker`` rows: implied vol of the mark price and deltas, by the kernels.

Deribit's convention (docs/options.md), checked against its own marks on the real captures: Black-76
on the forward ``F = underlying_price`` with ``r = 0``, time to an 08:00 UTC expiry in years of 365
days, the premium in coin (``mark_price * F`` in USD). A whole decode chunk goes through the JAX
kernels at once (one call per column, padded to a bucket), never one option at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.options.records import OPTION_TICKER

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
SCALE = 1e9
# what a decoder collects per ticker, before the kernels run
RAW_COLUMNS = ("ts_event_ns", "ts_recv_ns", "symbol", "underlying", "expiry_ns", "strike_price_nanos",
               "is_call", "underlying_price_nanos", "mark_price_nanos", "mark_iv", "venue_delta")
# decoded tickers before the kernels: what a live source hands the flow's option stage, which prices
# each micro-batch (never stored: it has no record type)
RAW_TABLE = "option_ticker_raw"
RAW_SCHEMA = pa.schema([("ts_event_ns", pa.int64()), ("ts_recv_ns", pa.int64()), ("symbol", pa.string()),
                        ("underlying", pa.string()), ("expiry_ns", pa.int64()),
                        ("strike_price_nanos", pa.int64()), ("is_call", pa.bool_()),
                        ("underlying_price_nanos", pa.int64()), ("mark_price_nanos", pa.int64()),
                        ("mark_iv", pa.float64()), ("venue_delta", pa.float64())])


def raw_table(raw: Mapping[str, Sequence[Any]]) -> pa.Table:
    """Decoded tickers (one list per name of :data:`RAW_COLUMNS`) as a :data:`RAW_SCHEMA` table."""
    return pa.table({c: raw[c] for c in RAW_COLUMNS}, schema=RAW_SCHEMA)


def price_raw(table: pa.Table, venue: str) -> pa.Table:
    """:func:`price_tickers` of a :data:`RAW_SCHEMA` table (a live micro-batch)."""
    return price_tickers({c: table.column(c).to_numpy(zero_copy_only=False) for c in RAW_COLUMNS}, venue)


def price_tickers(raw: Mapping[str, Sequence[Any]], venue: str) -> pa.Table:
    """The ``option_ticker`` rows of decoded tickers.

    Args:
        raw: one list per name of :data:`RAW_COLUMNS` (``mark_iv`` as a fraction, ``venue_delta`` NaN
            where the ticker had none).
        venue: the venue code of every row.

    Returns:
        An ``option_ticker`` table, rows in the order given.
    """
    n = len(raw["symbol"])
    if n == 0:
        return OPTION_TICKER.empty_table()
    # imported on use: JAX start-up costs seconds, and only this step needs it
    from kernels.options_pricing import IV_REASON_LABELS, black76_greeks, black76_implied_vol

    ts = np.asarray(raw["ts_event_ns"], np.int64)
    expiry = np.asarray(raw["expiry_ns"], np.int64)
    t_years = (expiry - ts) / NS_PER_YEAR
    forward = np.asarray(raw["underlying_price_nanos"], np.int64) / SCALE
    strike = np.asarray(raw["strike_price_nanos"], np.int64) / SCALE
    mark = np.asarray(raw["mark_price_nanos"], np.int64) / SCALE
    is_call = np.asarray(raw["is_call"], bool)
    mark_iv = np.asarray(raw["mark_iv"], np.float64)
    iv, reason = black76_implied_vol(mark * forward, forward, strike, t_years, 0.0, is_call)
    with np.errstate(invalid="ignore"):
        delta = black76_greeks(forward, strike, t_years, 0.0, iv, is_call).delta
        delta_at_mark = black76_greeks(forward, strike, t_years, 0.0, mark_iv, is_call).delta
    columns = {
        "ts_event_ns": ts, "ts_recv_ns": np.asarray(raw["ts_recv_ns"], np.int64),
        "symbol": list(raw["symbol"]),
        "underlying": list(raw["underlying"]), "expiry_ns": expiry,
        "strike_price_nanos": np.asarray(raw["strike_price_nanos"], np.int64),
        "option_type": np.where(is_call, "C", "P").tolist(),
        "underlying_price_nanos": np.asarray(raw["underlying_price_nanos"], np.int64),
        "mark_price_nanos": np.asarray(raw["mark_price_nanos"], np.int64), "t_years": t_years, "iv": iv,
        "iv_reason": np.asarray(IV_REASON_LABELS)[reason].tolist(), "mark_iv": mark_iv, "delta": delta,
        "delta_at_mark_iv": delta_at_mark, "venue_delta": np.asarray(raw["venue_delta"], np.float64),
    }
    return OPTION_TICKER.table(columns, constants={"venue": venue})
