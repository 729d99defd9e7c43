"""Paper trading's records (docs/backtest.md): the orders a strategy sent, its fills, and its
position and PnL, one stream per (venue, symbol, strategy). Halts and the kill switch are
``status`` rows (states ``halted``, ``killed``).

Quantities are float base units and money is float quote currency, as in the backtester's
results (fees and PnL are products of prices and sizes, not exact venue numbers); prices are the
exact ``*_nanos`` of the orders and fills.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

PAPER_ORDER = RecordType(
    "paper_order",
    common(
        Field("strategy", "lstr", "the strategy's name in the session"),
        Field("order_id", "i64", "the session's order id"),
        Field("action", "lstr", "new, cancel, modify, or refused (a pre-trade limit stopped it)"),
        Field("order_type", "lstr", "limit or market"),
        Field("tif", "lstr", "gtc, post_only or ioc"),
        Field("side", "i32", "+1 buy, -1 sell"),
        Field("price_nanos", "i64", "limit price, 1e-9 units (UNDEF_PRICE for market orders and cancels)"),
        Field("qty", "f64", "quantity in base units (0 for cancels)"),
    ),
    order_by=("venue", "symbol", "strategy", "ts_event_ns", "order_id", "action"),
    doc="An order message a paper strategy sent; ts_event_ns is the strategy's local time when it sent it.",
)

PAPER_FILL = RecordType(
    "paper_fill",
    common(
        Field("strategy", "lstr", "the strategy's name in the session"),
        Field("order_id", "i64", "the session's order id"),
        Field("side", "i32", "+1 bought, -1 sold"),
        Field("price_nanos", "i64", "fill price, 1e-9 units"),
        Field("qty", "f64", "quantity in base units"),
        Field("maker", "bool", "a passive fill"),
        Field("fee", "f64", "fee in quote currency (negative: a rebate)"),
    ),
    order_by=("venue", "symbol", "strategy", "ts_event_ns", "order_id"),
    doc="A fill of a paper order by the simulated broker; ts_event_ns is when the strategy received it.",
)

PAPER_POSITION = RecordType(
    "paper_position",
    common(
        Field("strategy", "lstr", "the strategy's name in the session"),
        Field("position", "f64", "signed position in base units"),
        Field("cash", "f64", "cash in quote currency (fees apart)"),
        Field("fees", "f64", "fees paid so far (negative: rebates earned)"),
        Field("mark_price_nanos", "i64", "the mid the position is marked at (UNDEF_PRICE when one-sided)"),
        Field("equity", "f64", "cash + position x mark - fees"),
        Field("day_pnl", "f64", "equity minus the equity at the start of the UTC day"),
        Field("halted", "bool", "a risk limit or the kill switch has stopped the strategy"),
    ),
    order_by=("venue", "symbol", "strategy", "ts_event_ns"),
    doc="A paper strategy's position and PnL after a micro-batch; ts_event_ns is the session's clock then.",
)

PAPER_RECORDS = (PAPER_ORDER, PAPER_FILL, PAPER_POSITION)
