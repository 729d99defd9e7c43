"""Trades: schema, keys, price/size ranges, sequence, day, skew, trade inside the book, baselines."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import Check, SuiteData
from quality.engine import Expect
from tapeflow.schemas.records import ASK, BID, NO_SIDE, TRADE, UNDEF_PRICE

RECORD = TRADE
CHECKS = (
    "schema",
    "not_null_keys",
    "side_codes",
    "price_range",
    "size_range",
    "sequence_monotonic",
    "sequence_gaps",
    "ts_within_day",
    "recv_skew",
    "trade_inside_book",
    "rows_vs_baseline",
    "volume_vs_baseline",
)


def plan(d: SuiteData) -> None:
    """Plan the trades checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    checks.codes(d, "side_codes", "aggressor_side", (BID, ASK, NO_SIDE), "aggressor side")
    everywhere = np.ones(d.table.num_rows, bool)
    checks.price_range(d, {"price_nanos": (d.col("price_nanos"), everywhere, True)})
    checks.size_range(d, {"size_nanos": (d.col("size_nanos"), everywhere, 1)})
    contiguous = _contiguous(d)
    checks.sequence_checks(d, contiguous=contiguous)
    checks.ts_within_day(d, derive.partition_ts(d.table))
    checks.recv_skew(d)
    trade_inside_book(d)
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")
    checks.vs_baseline(d, "volume_vs_baseline", checks.totals_by_instrument(d.codes, d.col("size_nanos")),
                       "volumes_nanos")


def _contiguous(d: SuiteData) -> bool:
    venues = d.config.contiguous_sequence.get(d.dataset, frozenset())
    return bool(d.instruments) and all(v in venues for v, _ in d.instruments)


def trade_inside_book(d: SuiteData) -> None:
    """Each trade within ``trade_in_book_tolerance_bps`` of the best bid/ask prevailing at its capture time.

    The prevailing book is the last quote (or snapshot best level) of the same instrument captured
    at or before the trade; trades with none, or with one older than ``trade_in_book_max_age_ns``,
    or with a one-sided book, are not judged (missing in GX terms).
    """
    cfg = d.config
    desc = (f"trade price within {cfg.trade_in_book_tolerance_bps} bps of the best bid/ask prevailing at"
            f" its capture time (outside rate <= {cfg.trade_outside_rate_max})")
    book = d.book
    if book is None or book.num_rows == 0:
        d.add(Check("trade_inside_book", desc, "derived", [], skipped="no book given"))
        return
    if "bid_price_nanos" not in book.column_names:
        d.add(Check("trade_inside_book", desc, "derived", [], skipped="book has no bid_price_nanos column"))
        return
    if book.schema.field("bid_price_nanos").type == RECORD["price_nanos"].arrow_type:
        bid, ask = book.column("bid_price_nanos").to_numpy(), book.column("ask_price_nanos").to_numpy()
    else:
        bid = derive.best_of(book.column("bid_price_nanos"))
        ask = derive.best_of(book.column("ask_price_nanos"))
    # join on the instrument names, since the two tables number their instruments independently
    names = {pair: i for i, pair in enumerate(d.instruments)}
    book_codes_raw, book_names = derive.instrument_codes(book)
    remap = np.array([names.get(pair, -1) for pair in book_names], np.int64)
    book_codes = remap[book_codes_raw] if len(book_codes_raw) else book_codes_raw
    p_bid, p_ask, age = derive.asof_bbo(d.codes, d.col("ts_recv_ns"), book_codes,
                                        book.column("ts_recv_ns").to_numpy(), bid, ask)
    price = d.col("price_nanos")
    fresh = (age >= 0) & (age <= cfg.trade_in_book_max_age_ns)
    judged = fresh & (p_bid != UNDEF_PRICE) & (p_ask != UNDEF_PRICE)
    below = np.where(judged, p_bid - price, 0).clip(min=0)
    above = np.where(judged, price - p_ask, 0).clip(min=0)
    outside_bps = np.where(judged, (below + above) / np.maximum(price, 1) * 1e4, np.nan)
    d.put("prevailing_bid_nanos", p_bid)
    d.put("prevailing_ask_nanos", p_ask)
    col = d.put("outside_book_bps", outside_bps)
    kwargs = {"column": col, "min_value": 0, "max_value": cfg.trade_in_book_tolerance_bps}
    if cfg.trade_outside_rate_max:
        kwargs["mostly"] = 1 - cfg.trade_outside_rate_max
    d.add(Check("trade_inside_book", desc, "derived", [Expect("ExpectColumnValuesToBeBetween", kwargs)],
                details={"tolerance_bps": cfg.trade_in_book_tolerance_bps, "judged_trades": int(judged.sum()),
                         "unjudged_trades": int((~judged).sum())},
                show=("prevailing_bid_nanos", "prevailing_ask_nanos", "outside_book_bps")))
