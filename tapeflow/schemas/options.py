"""Option records (issue 14): Deribit option tickers with our implied vols, and the IV surfaces.

``option_ticker`` is what ``tapeflow options`` prices (docs/options.md); ``option_surface`` is one
row of :func:`tapeflow.options.surface.surfaces` as stored data: the columns of
:data:`tapeflow.options.surface.SURFACE_SCHEMA` with the common columns in front (``ts_event_ns`` and
``ts_recv_ns`` the snapshot's grid time, ``symbol`` the underlying).
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

OPTION_SURFACE = RecordType(
    "option_surface",
    common(
        Field("expiry_ns", "i64", "expiry of this row's smile, ns UTC"),
        Field("t_years", "f64", "time from the grid time to expiry, years of 365 days"),
        Field("atm_iv", "f64", "ATM implied vol (at log-moneyness 0), a fraction; NaN where reasons say why"),
        Field("atm_total_var", "f64", "atm_iv^2 * t_years"),
        Field("rr25", "f64", "25-delta risk reversal: call IV - put IV (NaN where reasons say why)"),
        Field("bf25", "f64", "25-delta butterfly: mean of the wings' IV - atm_iv (NaN where reasons say "
              "why)"),
        Field("n_strikes", "i32", "OTM smile strikes with an IV"),
        Field("n_options", "i32", "tickers of this expiry in the snapshot"),
        Field("reasons", "lstr", "ok, or the SurfaceReason names, comma-separated (too_few_strikes, "
              "no_atm_bracket, no_25d_call, no_25d_put)"),
        Field("calendar_violations", "i32", "total variance below the next shorter "
              "expiry's, beyond tolerance"),
        Field("calendar_checked", "i32", "points the calendar check compared"),
        Field("butterfly_violations", "i32", "butterfly (convexity in strike) breaks beyond tolerance"),
        Field("butterfly_checked", "i32", "points the butterfly check compared"),
        Field("parity_violations", "i32", "put-call parity breaks beyond tolerance"),
        Field("parity_checked", "i32", "points the parity check compared"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "expiry_ns"),
    doc="One expiry of an underlying's IV surface at a snapshot grid time (ts_event_ns = ts_recv_ns = the "
        "grid time, symbol = the underlying).",
)

OPTION_RECORDS: tuple[RecordType, ...] = (OPTION_TICKER, OPTION_SURFACE)
