"""The normalized record types of tapeflow.

Prices and sizes are exact fixed-point int64 in units of 1e-9 (``*_nanos``, as Databento
prices): 1.5 USD is 1_500_000_000, 0.001 BTC is 1_000_000. Binary floats never carry a price
or a size on the way in. ``UNDEF_PRICE`` (int64 max) marks an absent price, as in DBN.
"""

from __future__ import annotations

import dataclasses

# The wire codes (quality flags, sides, actions, UNDEF_PRICE, book status) are declared once, in
# kernels.codes (the kernels read them as compile-time constants); records re-exports them.
from kernels.codes import (  # noqa: F401  (re-exported)
    ASK,
    BID,
    CROSSED,
    F_BAD_TS_RECV,
    F_GAP,
    F_HIDDEN,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_MBP,
    F_SNAPSHOT,
    F_SUPERSEDED,
    F_TOB,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_MODIFY,
    L3_NONE,
    L3_TRADE,
    NO_SIDE,
    RESYNC,
    UNDEF_PRICE,
    VALID,
)
from tapeflow.schemas.core import Field, RecordType, common
from tapeflow.schemas.databento import DATABENTO_RECORDS, DATABENTO_SPEND  # noqa: F401  (re-exported)
from tapeflow.schemas.derivatives import (  # noqa: F401  (re-exported)
    DERIVATIVE_RECORDS,
    FUNDING_RATE,
    INDEX_PRICE,
    INSURANCE_FUND,
    LIQUIDATION,
    MARK_PRICE,
    OPEN_INTEREST,
)
from tapeflow.schemas.failover import FAILOVER_RECORDS, SOURCE_SWITCH  # noqa: F401  (re-exported)
from tapeflow.schemas.ml import ML_RECORDS, TRAINING_EXAMPLE  # noqa: F401  (re-exported)
from tapeflow.schemas.options import OPTION_RECORDS, OPTION_SURFACE, OPTION_TICKER  # noqa: F401  (re-exported)
from tapeflow.schemas.paper import PAPER_RECORDS  # noqa: F401  (re-exported)

SCALE = 1_000_000_000
UNDEF_TS = -1

TRADE = RecordType(
    "trade",
    common(
        Field("sequence", "i64", "venue sequence or trade id as an integer (-1 if none)"),
        Field("trade_id", "str", "the venue's trade id as received ('' if none)"),
        Field("price_nanos", "i64", "trade price, 1e-9 units"),
        Field("size_nanos", "i64", "traded quantity, 1e-9 units"),
        Field("aggressor_side", "u8", "B buyer initiated, A seller initiated, N unknown"),
        Field("flags", "u8", "quality flags"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "sequence", "trade_id"),
    doc="One execution.",
)

BOOK_DELTA = RecordType(
    "book_delta",
    common(
        Field("sequence", "i64", "the venue's update id (Binance u, Bybit u, KuCoin sequence; -1 if none)"),
        Field("side", "u8", "B bid, A ask, N for a clear"),
        Field("action", "u8", "U set absolute size, D delete level, R clear book"),
        Field("price_nanos", "i64", "level price, 1e-9 units"),
        Field("size_nanos", "i64", "absolute size now at the level, 1e-9 units"),
        Field("flags", "u8", "quality flags; F_LAST ends a venue event"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "sequence", "side", "price_nanos"),
    doc="An L2 (market by price) level change.",
)

ORDER_EVENT = RecordType(
    "order_event",
    common(
        Field("sequence", "i64", "venue sequence number"),
        Field("order_id", "u64", "venue order id (0 for anonymous / hidden executions)"),
        Field("action", "u8", "A add, C cancel, M modify, R clear, T trade, F fill, N none"),
        Field("side", "u8", "B bid, A ask, N none"),
        Field("price_nanos", "i64", "order price, 1e-9 units"),
        Field("size_nanos", "i64", "A/M: order size; C: size removed; T/F: size traded"),
        Field("flags", "u8", "quality flags; F_LAST ends a venue event"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "sequence", "order_id", "action"),
    doc="An L3 (market by order) event.",
)

QUOTE = RecordType(
    "quote",
    common(
        Field("sequence", "i64", "venue sequence (-1 if none)"),
        Field("bid_price_nanos", "i64", "best bid, 1e-9 units (UNDEF_PRICE if none)"),
        Field("bid_size_nanos", "i64", "size at best bid"),
        Field("ask_price_nanos", "i64", "best ask, 1e-9 units (UNDEF_PRICE if none)"),
        Field("ask_size_nanos", "i64", "size at best ask"),
        Field("flags", "u8", "quality flags"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "sequence"),
    doc="Best bid and offer.",
)

# The best bid and offer rebuilt from the book, one row per change (tapeflow.book.stage.BookStage):
# a quote record, stored apart from the venue's own quotes (lake dataset / ClickHouse table ``bbo``).
BBO = dataclasses.replace(QUOTE, name="bbo", doc="Best bid and offer from the rebuilt book, at each change.")

BOOK_SNAPSHOT = RecordType(
    "book_snapshot",
    common(
        Field("sequence", "i64", "sequence of the last event applied"),
        Field("levels", "u16", "number of levels requested (N)"),
        Field("bid_price_nanos", "list_i64", "bid prices, best first: the levels that exist, at most N"),
        Field("bid_size_nanos", "list_i64", "bid sizes, best first, one per bid price"),
        Field("ask_price_nanos", "list_i64", "ask prices, best first: the levels that exist, at most N"),
        Field("ask_size_nanos", "list_i64", "ask sizes, best first, one per ask price"),
        Field("flags", "u8", "F_MAYBE_BAD_BOOK when the book was resyncing, crossed or gapped"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "sequence"),
    doc=("Top N levels of the book at one instant. List shape, the same for L2 and L3 books: each "
         "side lists only the levels that exist, best first, at most N (``levels``); a side with "
         "fewer levels has a shorter list, an empty side an empty one. Never padded: no "
         "UNDEF_PRICE or zero sizes inside the lists, every size > 0."),
)

BAR = RecordType(
    "bar",
    common(
        Field("interval", "lstr", "bar kind and length: 1s, 1m, 1d, tick:100, volume:..., dollar:..."),
        Field("open_price_nanos", "i64", "first trade price"),
        Field("high_price_nanos", "i64", "highest trade price"),
        Field("low_price_nanos", "i64", "lowest trade price"),
        Field("close_price_nanos", "i64", "last trade price"),
        Field("volume_nanos", "i64", "traded quantity"),
        Field("vwap_price_nanos", "i64", "volume-weighted average price, rounded"),
        Field("trade_count", "i64", "number of trades"),
        Field("buy_volume_nanos", "i64", "buyer-initiated quantity"),
        Field("sell_volume_nanos", "i64", "seller-initiated quantity"),
        Field("flags", "u8", "F_MAYBE_BAD_BOOK when a gap touched the bar"),
        Field("revision", "u32", "0 when first emitted; +1 each time late trades restate the bar (live)"),
    ),
    order_by=("venue", "symbol", "interval", "ts_event_ns"),
    doc="A bar; ts_event_ns is the bar open time, ts_recv_ns the capture time of its last input; "
        "the row with the highest revision of a bar is its final value.",
)

INSTRUMENT = RecordType(
    "instrument",
    common(
        Field("instrument_id", "u64", "venue numeric id (0 if none)"),
        Field("instrument_class", "lstr", "F future, S stock, C/P option, K spot, ... as the venue says"),
        Field("tick_size_nanos", "i64", "minimum price increment"),
        Field("lot_size_nanos", "i64", "minimum size increment (0 if unknown)"),
        Field("multiplier_nanos", "i64", "contract multiplier (0 if none)"),
        Field("currency", "lstr", "price currency"),
        Field("expiration_ns", "i64", "expiry time (-1 if none)"),
        Field("raw", "str", "the venue's definition, JSON"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns"),
    doc="An instrument definition.",
)

STATISTIC = RecordType(
    "statistic",
    common(
        Field("sequence", "i64", "venue sequence"),
        Field("stat_type", "u16", "venue statistic code (DBN StatType)"),
        Field("price_nanos", "i64", "value when it is a price (UNDEF_PRICE if not)"),
        Field("quantity_nanos", "i64", "value when it is a quantity"),
        Field("flags", "u8", "quality flags"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "stat_type", "sequence"),
    doc="A venue statistic (settlement, open interest, session high, ...).",
)

REJECTED = RecordType(
    "rejected",
    common(
        Field("reason", "lstr", "reason code, e.g. truncated, bad_json, bad_number, negative_size"),
        Field("detail", "str", "human readable: what was wrong and where in the record"),
        Field("location", "str", "where: file:line, stream offset or record index"),
        Field("raw", "bytes", "the raw bytes as received"),
    ),
    order_by=("venue", "ts_recv_ns", "location"),
    doc="A dead letter: input that could not be normalized, kept whole with its reason.",
)

METRIC = RecordType(
    "metric",
    common(
        Field("interval", "lstr", "grid the metrics are sampled on, e.g. 1s"),
        Field("sequence", "i64", "sequence of the last book event before the sample"),
        Field("mid_price_nanos", "i64", "(best bid + best ask) // 2 (UNDEF_PRICE if a side is empty)"),
        Field("spread_nanos", "i64", "best ask - best bid (UNDEF_PRICE if one side empty)"),
        Field("spread_bps", "f64", "spread / mid * 1e4 (NaN if one side empty)"),
        Field("microprice_nanos", "i64", "(bid*ask_size + ask*bid_size) // (bid_size + ask_size)"),
        Field("bid_depth_nanos", "i64", "summed size of the top N bid levels"),
        Field("ask_depth_nanos", "i64", "summed size of the top N ask levels"),
        Field("imbalance", "f64", "(bid_depth - ask_depth) / (bid_depth + ask_depth), in [-1, 1]"),
        Field("ofi_nanos", "i64", "order-flow imbalance at the top of book over the interval (Cont et al.)"),
        Field("cvd_nanos", "i64", "cumulative (buy - sell) traded volume since the start of the stream/day"),
        Field("realized_vol", "f64", "sqrt of summed squared log mid returns in the interval (NaN if none)"),
        Field("flags", "u8", "F_MAYBE_BAD_BOOK when the book was resyncing, crossed, gapped or degraded"),
    ),
    order_by=("venue", "symbol", "interval", "ts_event_ns"),
    doc="Book and flow metrics sampled on a time grid; ts_event_ns is the sample (grid) time.",
)

STATUS = RecordType(
    "status",
    common(
        Field("state", "lstr", "connected, disconnected, resyncing, synced, stale, degraded, recovered, gap, "
              "skew, checksum_mismatch"),
        Field("sequence", "i64", "venue sequence where it happened (-1 if none)"),
        Field("until_ns", "i64", "end of the affected window when known (-1 while open)"),
        Field("detail", "str", "human readable: why, with the offending values"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "state"),
    doc="A feed-health event from the live flow: the gap-repair sensor reads the gap/degraded windows.",
)

# What a detector can report (docs/signals.md); the quality suite refuses any other kind.
SIGNAL_KINDS = (
    "whale", "spoofing", "iceberg", "hidden", "absorption", "withdrawal", "wall", "spike",
    "institutional", "creep", "contraction", "stealth", "cross_strike",
    "basis_extreme", "oi_surge", "liquidation_cluster", "insurance_stress",
)

SIGNAL = RecordType(
    "signal",
    common(
        Field("kind", "lstr", "what was detected: one of SIGNAL_KINDS (whale, spoofing, withdrawal, ...)"),
        Field("side", "i32", "side of the orders or flow: +1 bid/buy, -1 ask/sell, 0 none "
              "(spoofing: the side of the layered orders)"),
        Field("price_nanos", "i64", "price the signal is about, 1e-9 units (UNDEF_PRICE where none applies)"),
        Field("size_nanos", "i64", "size of the evidence (traded, pulled or resting), 1e-9 units"),
        Field("start_ns", "i64", "venue time the episode began"),
        Field("end_ns", "i64", "venue time the episode ended (<= ts_event_ns, when the evidence completed)"),
        Field("confidence", "f64", "calibrated probability in [0, 1] that the episode is real"),
        Field("score", "f64", "the detector's raw statistic (its meaning is the detector's)"),
        Field("detector", "lstr", "detector name and version, e.g. whale/1"),
        Field("params_hash", "lstr", "hash of the thresholds the detector ran with"),
        Field("flags", "u8", "F_GAP / F_MAYBE_BAD_BOOK when a gap or degraded window touched the evidence"),
        Field("evidence", "str", "the few numbers a person needs to judge the signal, a JSON object"),
    ),
    order_by=("venue", "symbol", "kind", "ts_event_ns", "detector"),
    doc="A detector's alert; ts_event_ns is when the evidence completed, ts_recv_ns the capture time then.",
)

INSURANCE_STRESS = RecordType(
    "insurance_stress",
    common(
        Field("asset", "lstr", "the fund's currency (symbol: the fund, as in insurance_fund)"),
        Field("balance_nanos", "dec38",
              "the fund's balance at ts_event_ns (nanos, decimal128: pools past 9.2e9 units fit)"),
        Field("peak_nanos", "dec38", "the running maximum of the fund's balance, this one included"),
        Field("drawdown", "f64", "(peak - balance) / peak (NaN while the peak is not above zero)"),
        Field("level", "u8", "0 calm, 1 watch, 2 alert, 3 critical (InsuranceStressConfig thresholds)"),
    ),
    order_by=("venue", "symbol", "asset", "ts_event_ns"),
    doc="An insurance fund's stress level at one of its balances "
    "(tapeflow.derivatives.derived.insurance_stress); ts_event_ns and ts_recv_ns are the balance's time.",
)

ALL_RECORDS: dict[str, RecordType] = {
    r.name: r
    for r in (
        TRADE, BOOK_DELTA, ORDER_EVENT, QUOTE, BBO, BOOK_SNAPSHOT, BAR, INSTRUMENT, STATISTIC, REJECTED,
        METRIC, STATUS, SIGNAL, *DERIVATIVE_RECORDS, *OPTION_RECORDS, *ML_RECORDS, *PAPER_RECORDS,
        *DATABENTO_RECORDS.values(), *FAILOVER_RECORDS,
        INSURANCE_STRESS,
    )
}
