"""The ``option_ticker`` record: one venue option ticker, with the implied vol and delta we compute.

Declared with the schema machinery of :mod:`tapeflow.schemas` (one declaration, Arrow and
ClickHouse derived) but not yet among :data:`tapeflow.schemas.records.ALL_RECORDS`: no lake dataset,
warehouse table or quality suite holds it until the surfaces and their Dagster assets are built
(docs/options.md, "What is left"). ``tapeflow options`` writes it to a Parquet file.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

OPTION_TICKER = RecordType(
    "option_ticker",
    common(
        Field("underlying", "lstr", "underlying currency or pair, e.g. BTC, ETH, XRP_USDC"),
        Field("expiry_ns", "i64", "expiry, ns UTC (Deribit: 08:00 UTC of the expiry date)"),
        Field("strike_price_nanos", "i64", "strike in the quote currency (USD), 1e-9 units"),
        Field("option_type", "lstr", "C call, P put"),
        Field("underlying_price_nanos", "i64", "the forward the option is priced on (Deribit's "
              "underlying_price: its future, or a synthetic one), USD, 1e-9 units"),
        Field("mark_price_nanos", "i64", "the venue's mark price, in units of the underlying coin (Deribit "
              "quotes premiums in BTC/ETH), 1e-9 units"),
        Field("t_years", "f64", "time from ts_event_ns to expiry, years of 365 days"),
        Field("iv", "f64", "our Black-76 implied vol of the mark price (F = underlying price, r = 0), as a "
              "fraction; NaN where none"),
        Field("iv_reason", "lstr", "ok, or why iv is NaN (kernels.options_pricing.IVReason: below_intrinsic, "
              "above_upper_bound, no_vega, non_positive_time, ...)"),
        Field("mark_iv", "f64", "the venue's mark implied vol, as a fraction (Deribit sends percent)"),
        Field("delta", "f64", "our Black-76 forward delta at iv (NaN where iv is)"),
        Field("delta_at_mark_iv", "f64", "our Black-76 forward delta at the venue's mark_iv"),
        Field("venue_delta", "f64", "the venue's delta (Deribit greeks.delta; NaN when the ticker has none)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="A venue option ticker (Deribit ticker.<option>) with the implied vol and delta recomputed from it.",
)
