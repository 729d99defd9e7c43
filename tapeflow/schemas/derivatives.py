"""The records of the perpetual-futures side of a venue: funding, mark and index prices, open
interest, liquidations and insurance funds (docs/derivatives.md).

Prices and sizes are exact ``*_nanos`` as every other record. Funding rates are ratios, not prices
or sizes: venues publish them with more decimals than nanos hold (OKX ``0.0001515032``, Kraken
Futures ``-8.92730506785e-07``), so they are the closest double to the venue's decimal text (as a
spread in bps is), NaN where the venue gave none. An absent price or size is ``UNDEF_PRICE``; an
absent time ``-1``.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

FUNDING_RATE = RecordType(
    "funding_rate",
    common(
        Field(
            "funding_rate", "f64", "the rate paid at funding_time_ns, a ratio (0.0001 = 1 bp; NaN if none)"
        ),
        Field(
            "funding_time_ns",
            "i64",
            "the funding (settlement) the rate is for: the next one for a live "
            "estimate, the past one for a history row (-1 if not given)",
        ),
        Field(
            "predicted_rate",
            "f64",
            "the venue's estimate of the rate after that one (OKX nextFundingRate, "
            "BitMEX indicativeFundingRate; NaN if none)",
        ),
        Field("settled", "u8", "1 for a rate already paid (REST history), 0 for a live estimate"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "funding_time_ns"),
    doc="A funding rate of a perpetual swap as the venue published it.",
)

MARK_PRICE = RecordType(
    "mark_price",
    common(
        Field(
            "mark_price_nanos", "i64", "the venue's mark price, 1e-9 units (negative for spread instruments)"
        ),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="The price the venue marks positions at (and liquidates at).",
)

INDEX_PRICE = RecordType(
    "index_price",
    common(
        Field("index_price_nanos", "i64", "the index (spot reference) price, 1e-9 units"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc=(
        "An index price. ``symbol`` is the instrument when the venue publishes the index with one "
        "(Binance markPrice ``i``, Bybit and Deribit tickers), else the index's own name (Binance "
        "indexPrice ``BTCUSD``, OKX index-tickers ``BTC-USDT``, BitMEX ``.BXBT``)."
    ),
)

OPEN_INTEREST = RecordType(
    "open_interest",
    common(
        Field(
            "open_interest_nanos",
            "i64",
            "open contracts, in the venue's size unit (contracts or base currency, as its sizes), 1e-9 units",
        ),
        Field(
            "open_interest_value_nanos",
            "i64",
            "their value as the venue states it (Bybit "
            "openInterestValue, OKX oiCcy, Binance sumOpenInterestValue; UNDEF_PRICE if none)",
        ),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="Open interest of one instrument.",
)

LIQUIDATION = RecordType(
    "liquidation",
    common(
        Field("liquidation_id", "str", "the venue's id of the liquidation order ('' if none)"),
        Field("side", "u8", "side of the liquidation order: B buys (a short was liquidated), A sells"),
        Field("price_nanos", "i64", "order or bankruptcy price, 1e-9 units"),
        Field("size_nanos", "i64", "liquidated quantity, in the venue's size unit, 1e-9 units"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "liquidation_id"),
    doc="A forced (liquidation) order.",
)

INSURANCE_FUND = RecordType(
    "insurance_fund",
    common(
        Field("asset", "lstr", "the currency the balance is in"),
        Field(
            "balance_nanos",
            "dec38",
            "the fund's balance, 1e-9 units, an integer of up to 38 digits (a pool may pass int64's "
            "9.2e9 units: Bybit's shared USDT pool holds 1.01e10)",
        ),
    ),
    order_by=("venue", "symbol", "asset", "ts_event_ns"),
    doc="An insurance-fund balance; ``symbol`` names the fund (the venue's pool, or '' for one per asset).",
)

DERIVATIVE_BASIS = RecordType(
    "derivative_basis",
    common(
        Field("interval", "lstr", "grid the basis is sampled on, e.g. 1s"),
        Field("mark_price_nanos", "i64", "the last mark at or before the grid time (UNDEF_PRICE: not fresh)"),
        Field("index_price_nanos", "i64", "the last index at or before it (UNDEF_PRICE if not fresh)"),
        Field("basis_bps", "f64", "(mark - index) / index * 1e4 (NaN without a fresh pair)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="Basis of an instrument at a grid time (tapeflow.derivatives.derived.basis); ts_event_ns and "
    "ts_recv_ns are the grid time.",
)

OPEN_INTEREST_CHANGE = RecordType(
    "open_interest_change",
    common(
        Field("interval", "lstr", "grid the change is sampled on, e.g. 1s"),
        Field("window_ns", "i64", "the change is over this look-back"),
        Field("open_interest_nanos", "i64", "open interest at the grid time (UNDEF_PRICE if not fresh)"),
        Field("change_nanos", "i64", "OI(t) - OI(t - window_ns) (UNDEF_PRICE without both)"),
        Field("change_pct", "f64", "change / OI(t - window_ns) * 100 (NaN without both, or from zero)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="Open-interest change of an instrument at a grid time "
    "(tapeflow.derivatives.derived.open_interest_change); the times are the grid time.",
)

LIQUIDATION_CLUSTER = RecordType(
    "liquidation_cluster",
    common(
        Field("side", "u8", "side of the liquidation orders: B buys (shorts liquidated), A sells"),
        Field("start_ns", "i64", "event time of the cluster's first liquidation"),
        Field("end_ns", "i64", "event time of its last liquidation"),
        Field("count", "i64", "liquidations in it"),
        Field("notional", "f64", "summed |price| x size in the quote unit"),
    ),
    order_by=("venue", "symbol", "side", "ts_event_ns"),
    doc="A cluster of liquidations of one side (tapeflow.derivatives.derived.liquidation_clusters); "
    "ts_event_ns and ts_recv_ns are its end.",
)

DERIVATIVE_RECORDS: tuple[RecordType, ...] = (
    FUNDING_RATE,
    MARK_PRICE,
    INDEX_PRICE,
    OPEN_INTEREST,
    LIQUIDATION,
    INSURANCE_FUND,
    DERIVATIVE_BASIS,
    OPEN_INTEREST_CHANGE,
    LIQUIDATION_CLUSTER,
)
