"""The Databento spend ledger: one row per historical request the cost guard judged (docs/databento.md).

Every ``timeseries.get_range`` tapeflow sends is priced first (``metadata.get_cost``,
``metadata.get_billable_size``) and judged against the daily and monthly budgets; the ledger keeps
each decision, so what was spent, and what was refused and why, is in the lake and ClickHouse.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

# Closed sets: a request ends in one of SPEND_OUTCOMES; a refused or failed one names a SPEND_REASONS.
SPEND_OUTCOMES = ("spent", "refused", "failed", "cached")
SPEND_REASONS = ("", "over_daily_budget", "over_monthly_budget", "http_error", "connection_error")

DATABENTO_SPEND = RecordType(
    "databento_spend",
    common(
        Field("request_id", "str", "the request's id: sha1 of endpoint, dataset, schema, symbols and range"),
        Field("endpoint", "lstr", "the priced request, e.g. timeseries.get_range"),
        Field("schema", "lstr", "the DBN schema requested (mbo, trades, ...)"),
        Field("symbols", "str", "the symbols requested, comma separated (venue spelling)"),
        Field("start_ns", "i64", "the request's inclusive start, ns UTC"),
        Field("end_ns", "i64", "the request's exclusive end, ns UTC"),
        Field("estimate_usd", "f64", "metadata.get_cost's answer for the request, US dollars"),
        Field("billable_bytes", "i64", "metadata.get_billable_size's answer, bytes"),
        Field("outcome", "lstr", "spent, refused (over a budget: nothing requested), failed or cached "
              "(served from the pull cache: nothing requested, nothing spent)"),
        Field("reason", "lstr", "why a request was refused or failed: one of SPEND_REASONS"),
        Field("why", "str", "what asked for the data (backfill, gap repair of a window, ...)"),
        Field("daily_budget_usd", "f64", "the daily budget the request was judged against"),
        Field("monthly_budget_usd", "f64", "the monthly budget the request was judged against"),
        Field("spent_day_usd", "f64", "spent earlier the same UTC day, before this request"),
        Field("spent_month_usd", "f64", "spent earlier the same calendar month, before this request"),
        Field("bytes_received", "i64", "bytes of DBN received (0 when nothing was requested)"),
        Field("path", "str", "where the data was landed ('' when nothing was)"),
        Field("detail", "str", "the refusal or error message"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "request_id"),
    doc="A priced Databento historical request; ts_event_ns is when it was judged (wall clock), "
        "ts_recv_ns when it finished; venue the dataset, symbol the first symbol requested.",
)

DATABENTO_RECORDS: dict[str, RecordType] = {r.name: r for r in (DATABENTO_SPEND,)}
